"""The real image: built from the real Dockerfile by ``scripts/image`` (podman and buildah, a
Debian base made by mmdebstrap: no container registry), started beside a private PostgreSQL
the way deploy/compose.yaml starts its two hosts, and used through the REST API.

One build serves the module (``--layers`` reuses what did not change between runs on one
machine); every container and volume a test starts is removed at its end.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "build" / "containers" / "containers.conf"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CONTAINERS_CONF", None)  # scripts/image writes ours
    return env


def _podman(*args: str, check: bool = True, input: str | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**_env(), "CONTAINERS_CONF": str(CONF)}
    done = subprocess.run(["podman", *args], capture_output=True, text=True, env=env,
                          input=input, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)}: {done.stderr[-2000:]}")
    return done


def _build(target: str) -> str:
    done = subprocess.run([str(ROOT / "scripts" / "image"), "--target", target],
                          capture_output=True, text=True, env=_env(), timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def demo_image() -> str:
    for tool in ("podman", "buildah", "mmdebstrap", "runc"):
        assert shutil.which(tool), f"{tool} missing: scripts/setup-toolchains.sh installs it"
    out = _build("demo")
    assert "built omnicore:demo:" in out
    return "omnicore:demo"


class Host:
    """One container of the image on the host's network (the test's ports are loopback)."""

    def __init__(self, image: str, env: dict[str, str], port: int) -> None:
        self.name = f"omnicore-test-{uuid.uuid4().hex[:8]}"
        self.volume = f"{self.name}-data"
        self.port = port
        argv = ["run", "-d", "--name", self.name, "--network", "host", "--read-only",
                "--tmpfs", "/tmp", "-v", f"{self.volume}:/var/lib/omnicore"]
        for key, value in {**env, "OMNICORE_CONSOLE__PORT": str(port),
                           "OMNICORE_CONSOLE__HOST": "127.0.0.1"}.items():
            argv += ["-e", f"{key}={value}"]
        self.started = time.monotonic()
        _podman(*argv, image)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self) -> float:
        """Seconds from `podman run` to /readyz 200 (the container must stay up meanwhile)."""
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(self.url("/readyz"), timeout=2) as r:
                    if r.status == 200:
                        return time.monotonic() - self.started
            except (OSError, urllib.error.HTTPError):
                pass
            state = _podman("inspect", "--format", "{{.State.Status}}", self.name).stdout
            assert state.strip() == "running", self.logs()
            assert time.monotonic() < deadline, "no /readyz 200:\n" + self.logs()
            time.sleep(0.2)

    def logs(self) -> str:
        done = _podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def sh(self, script: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return _podman("exec", "-i", self.name, "sh", "-c", script, check=False, input=input)

    def stop(self) -> None:
        _podman("rm", "-f", "-t", "10", self.name, check=False)
        _podman("volume", "rm", "-f", self.volume, check=False)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _compose_hosts(pg_url: str, key: str) -> list[dict[str, str]]:
    """deploy/compose.yaml's omnicore services' environments, its `db` service replaced by the
    test's PostgreSQL and ${VAR} by this run's values."""
    doc = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    hosts = []
    for name, service in sorted(doc["services"].items()):
        if not name.startswith("omnicore-"):
            continue
        env = {}
        for var, value in service["environment"].items():
            value = str(value)
            if var == "OMNICORE_STORAGE__URL":
                value = pg_url
            elif value.startswith("${OMNICORE_SECRET_KEY"):
                value = key
            env[var] = value
        hosts.append(env)
    return hosts


def _request(url: str, token: str, body: dict[str, Any] | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="POST" if data else "GET",
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture
def compose_hosts(demo_image: str, pg_url: str) -> Iterator[list[Host]]:
    import base64

    key = base64.b64encode(os.urandom(32)).decode()
    hosts: list[Host] = []
    try:
        for env in _compose_hosts(pg_url, key):
            hosts.append(Host(demo_image, env, _free_port()))
        yield hosts
    finally:
        for host in hosts:
            host.stop()


def test_compose_hosts_from_the_image_serve_plugins_warm_as_a_non_root_user(
        compose_hosts: list[Host]) -> None:
    first, second = compose_hosts
    plugins = len(list((ROOT / "build" / "plugins").glob("*.wasm")))  # what the image took
    for host in compose_hosts:
        ready = host.wait_ready()
        print(f"{host.name}: /readyz 200 {ready:.1f} s after podman run")
        logs = host.logs()
        assert f"{plugins} loaded, {plugins} total" in logs, logs[-3000:]
        # Warm: every module came from the image's cache (a miss would compile and try to
        # write the cache, which the read-only root refuses with a warning).
        assert "cannot write compiled-module cache" not in logs, logs[-3000:]
        assert "Traceback" not in logs
    # Non-root, read-only root, no compiler, browser or database server in the image.
    check = first.sh("id -u; touch /app/x 2>&1; touch /opt/omnicore/x 2>&1;"
                     " for t in gcc cc g++ clang chromium postgres mariadbd redis-server cargo"
                     " go node; do command -v $t; done; true")
    lines = check.stdout.splitlines()
    assert lines[0] == "10001", check.stdout
    assert all("Read-only file system" in line for line in lines[1:3]), check.stdout
    assert lines[3:] == [], f"tools in the image: {lines[3:]}"
    # An admin added through one host signs in on the other: one database behind both.
    added = first.sh("omnicore users add admin --password-stdin --app /app",
                     input="a-long-enough-password\n")
    assert added.returncode == 0, added.stderr
    token = first.sh("omnicore users token admin --app /app").stdout.strip().splitlines()[-1]
    out = _request(second.url("/api/v1/plugins/greeter-rust/invoke"), token,
                   {"handler": "greet", "input": json.dumps({"name": "pod"})})
    assert "pod" in out["output"], out
    # Both hosts count in one kv: the second call sees the first's step.
    step = {"handler": "count", "input": json.dumps({"by": 2})}
    counted = [_request(h.url("/api/v1/plugins/counter-rust/invoke"), token, step)
               for h in (first, second)]
    assert [json.loads(c["output"])["count"] for c in counted] == [2, 4], counted


def test_the_default_image_is_an_empty_app(demo_image: str) -> None:
    """`scripts/image` without a target: the host alone, no plugin, no grant, no connector;
    its layers are the demo's (built above), so this build is quick."""
    _build("runtime")
    host = Host("omnicore:latest", {}, _free_port())
    try:
        host.wait_ready()
        assert "0 loaded, 0 total" in host.logs()
        config = yaml.safe_load(host.sh("cat /app/omnicore.yaml").stdout)
        assert set(config) == {"name", "plugins_dir"}, config  # no plugins, connectors
    finally:
        host.stop()
