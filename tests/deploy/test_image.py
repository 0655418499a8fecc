"""The real image: built from the real Dockerfile by ``scripts/image`` (podman and buildah, a
Debian base made by mmdebstrap: no container registry), started the way
docs/operations/image.md says (its very command line, as a user types it, with no
CONTAINERS_CONF), and beside a private PostgreSQL the way deploy/compose.yaml starts its two
hosts, and used through the REST API.

One build serves the module (``--layers`` reuses what did not change between runs on one
machine), from a copy of build/plugins with a scratch plugin in it; every container and volume
a test starts is removed at its end.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from omnicore.cli import main
from tests.dbservers import free_port
from tests.hosts import http_ok
from tests.native import avx_instructions
from tests.waiting import Logged, eventually

ROOT = Path(__file__).resolve().parents[2]
CONF = ROOT / "build" / "containers" / "containers.conf"
PAGE = ROOT / "docs" / "operations" / "image.md"
# The folder the test's demo image takes its plugins from: build/plugins (links to its files)
# with a scratch plugin beside the demo's, as a plugin author leaves one there. Under
# build/plugins (the build context has it), in a folder of its own (the folder's other users
# read only its *.wasm).
PLUGINS = ROOT / "build" / "plugins" / ".image-test"
SCRATCH = "scratch-left-here"
DEMO_PLUGINS = sorted(yaml.safe_load((ROOT / "plugins" / "demo.yaml").read_text())["plugins"])


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


def _build(target: str, *args: str) -> str:
    done = subprocess.run([str(ROOT / "scripts" / "image"), "--target", target, *args],
                          capture_output=True, text=True, env=_env(), timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout


def _plugins_with_a_scratch(scratch: str = SCRATCH) -> None:
    """PLUGINS: build/plugins' files (links, so the same bytes) and a scratch plugin (the Rust
    greeter under another name: it would load, and count, if the image took it)."""
    shutil.rmtree(PLUGINS, ignore_errors=True)
    PLUGINS.mkdir()
    built = PLUGINS.parent
    for path in sorted(built.iterdir()):
        if path.is_file():
            os.link(path, PLUGINS / path.name)
    shutil.copyfile(built / "greeter-rust.wasm", PLUGINS / f"{scratch}.wasm")


#: The demo plugin the image compiles itself; it takes the others' compiled modules.
COMPILED_IN_THE_IMAGE = "greeter-rust"


def _build_demo(modules: Path, *args: str) -> str:
    """``scripts/image --target demo`` from PLUGINS (made here, removed after), taking the
    modules the tests' cache holds for them (the build step's arguments are the same each
    time, so a rebuild takes that step from buildah's cache)."""
    _plugins_with_a_scratch()
    try:
        # The tests' module key (tests/conftest.py): the entries taken are authenticated.
        return _build("demo", "--plugins", str(PLUGINS), "--modules", str(modules),
                      "--module-key", str(ROOT / "build" / "test-module.key"), *args)
    finally:
        shutil.rmtree(PLUGINS, ignore_errors=True)


@pytest.fixture(scope="module")
def demo_image(module_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo image, its modules taken from the tests' module cache: the demo's plugins but
    one are compiled here first with the image's settings, into the cache test_demo.py and the
    conformance tests load the same bytes from (a minute of CPU compiled once, not twice);
    the image compiles the one left out itself, so both ways into its cache are built."""
    for tool in ("podman", "buildah", "mmdebstrap", "runc"):
        assert shutil.which(tool), f"{tool} missing: scripts/setup-toolchains.sh installs it"
    app = tmp_path_factory.mktemp("demo-app")
    config = yaml.safe_load((ROOT / "plugins" / "demo.yaml").read_text())
    config["sandbox"] = {**config.get("sandbox", {}), "cache_dir": str(module_cache)}
    (app / "omnicore.yaml").write_text(yaml.safe_dump(config))
    (app / "plugins").mkdir()
    for name in DEMO_PLUGINS:
        if name != COMPILED_IN_THE_IMAGE:
            os.link(ROOT / "build" / "plugins" / f"{name}.wasm", app / "plugins" / f"{name}.wasm")
    # With the image's compiler, whatever the tests' own (tests/compiler.py): its hosts load
    # these entries warm only if they are Cranelift's.
    got = CliRunner().invoke(main, ["precompile", str(app)],
                             env={"OMNICORE_SANDBOX__COMPILER": "cranelift"})
    assert got.exit_code == 0, got.output
    out = _build_demo(module_cache)
    assert "built omnicore:demo:" in out
    yield "omnicore:demo"


def documented_run() -> list[str]:
    """The command docs/operations/image.md gives to run the image, the one line of its shell
    blocks that starts with ``podman run``; the README's Operations shows the same."""
    blocks = re.findall(r"^```shell\n(.*?)^```", PAGE.read_text(), re.DOTALL | re.MULTILINE)
    lines = [line.strip() for block in blocks for line in block.splitlines()
             if line.strip().startswith("podman run")]
    assert len(lines) == 1, f"{PAGE}: not one `podman run` line: {lines}"
    assert f"`{lines[0]}`" in (ROOT / "README.md").read_text(), "README: not the page's command"
    return shlex.split(lines[0])


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
        """Seconds from `podman run` to /readyz?plugins=loaded 200, every plugin loaded (the
        container must stay up meanwhile; plain /readyz is 200 while plugins still load)."""
        def ready() -> bool:
            if http_ok(self.url("/readyz?plugins=loaded")):
                return True
            state = _podman("inspect", "--format", "{{.State.Status}}", self.name).stdout
            assert state.strip() == "running", self.logs()
            return False

        try:
            eventually(ready, "/readyz?plugins=loaded 200", timeout=180, every=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}:\n{self.logs()}") from None
        return time.monotonic() - self.started

    def logs(self) -> str:
        done = _podman("logs", self.name, check=False)
        return done.stdout + done.stderr

    def sh(self, script: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return _podman("exec", "-i", self.name, "sh", "-c", script, check=False, input=input)

    def stop(self) -> None:
        _podman("rm", "-f", "-t", "10", self.name, check=False)
        _podman("volume", "rm", "-f", self.volume, check=False)


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
            elif m := re.fullmatch(r"\$\{\w+:-(.*)\}", value):
                value = m[1]  # unset in the operator's shell: its default
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
            hosts.append(Host(demo_image, env, free_port()))
        yield hosts
    finally:
        for host in hosts:
            host.stop()


def test_compose_hosts_from_the_image_serve_plugins_warm_as_a_non_root_user(
        compose_hosts: list[Host]) -> None:
    first, second = compose_hosts
    plugins = len(DEMO_PLUGINS)  # what the image took: the demo's, not the scratch
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
    host = Host("omnicore:latest", {}, free_port())
    try:
        host.wait_ready()
        assert "0 loaded, 0 total" in host.logs()
        config = yaml.safe_load(host.sh("cat /app/omnicore.yaml").stdout)
        assert set(config) == {"name", "plugins_dir"}, config  # no plugins, connectors
    finally:
        host.stop()


def test_the_code_the_image_compiled_runs_on_any_x86_64(demo_image: str, tmp_path: Path) -> None:
    """What the image's build compiles from source, hnswlib's sdist (there is no x86-64 wheel)
    and omnicore's own C extensions, is code for the architecture's baseline, not for the CPU
    of the machine that built it. hnswlib's build adds -march=native unless told not to: an
    image built on a machine with AVX-512 died of SIGILL at its first vector search on any
    machine without it (and under valgrind, which has no AVX-512)."""
    found = _podman("run", "--rm", "--entrypoint", "sh", demo_image, "-c",
                    "find /opt/omnicore -name '*.so' \\( -name 'hnswlib*'"
                    " -o -path '*/site-packages/omnicore/*' \\)").stdout.split()
    assert any(Path(f).name.startswith("hnswlib") for f in found), found
    assert any("/omnicore/sandbox/" in f for f in found), found
    container = _podman("create", demo_image).stdout.strip()
    try:
        avx = {}
        for path in found:
            local = tmp_path / Path(path).name
            _podman("cp", f"{container}:{path}", str(local))
            avx[path] = avx_instructions(local)
    finally:
        _podman("rm", "-f", container, check=False)
    assert not any(avx.values()), avx


def _image_ids(*filters: str) -> set[str]:
    return set(_podman("images", "-a", "-q", "--no-trunc", *filters).stdout.split())


def test_a_rebuild_removes_the_image_it_replaced_and_labels_its_source(
        demo_image: str, module_cache: Path) -> None:
    """Rebuilding after a change moves the tag and removes the replaced image with the layers
    only it used: before, every CI run left its images behind until the machine's disk was
    full. The change here is a label (`--label`), which buildah adds as the last step, so the
    rebuild takes every layer from the cache; every image also says the commit and version it
    was built from (a source change would rebuild the demo's plugin compilation: minutes)."""
    before = _image_ids("--filter", "reference=omnicore:demo")
    dangling = _image_ids("--filter", "dangling=true")
    rebuild = uuid.uuid4().hex
    _build_demo(module_cache, "--label", f"org.example.rebuild={rebuild}")  # as the fixture's
    after = _image_ids("--filter", "reference=omnicore:demo")
    assert len(before) == len(after) == 1 and before != after, (before, after)
    gone = _podman("image", "exists", before.pop(), check=False)
    assert gone.returncode == 1, "the replaced demo image is still there"
    assert _image_ids("--filter", "dangling=true") <= dangling
    labels = json.loads(_podman("image", "inspect", "--format", "{{json .Labels}}",
                                "omnicore:demo").stdout)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                          text=True, check=True).stdout.strip()
    assert labels["org.example.rebuild"] == rebuild
    assert labels["org.opencontainers.image.revision"].removesuffix("-dirty") == head
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert labels["org.opencontainers.image.version"] == project["version"]
    refused = subprocess.run([str(ROOT / "scripts" / "image"), "--label", "no-equals-sign"],
                             capture_output=True, text=True, env=_env(), timeout=60)
    assert refused.returncode == 2 and "KEY=VALUE" in refused.stderr, refused.stderr
    refused = subprocess.run([str(ROOT / "scripts" / "image"), "--modules", str(ROOT / "nope")],
                             capture_output=True, text=True, env=_env(), timeout=60)
    assert refused.returncode == 2 and "is not a folder" in refused.stderr, refused.stderr


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


#: What holds a port for a container (podman's own forwarders): another run of the
#: documented line, which ends on its own.
CONTAINER_FORWARDERS = ("conmon", "rootlessport", "podman", "slirp4netns", "pasta")


def _holder(port: int) -> str | None:
    """Who listens on ``port`` on this machine, as ``pid N (its command line)`` where /proc
    tells; None when nothing does."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    if not inodes:
        return None if _port_free(port) else "a process out of this machine's sight"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                argv = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace").strip()
                return f"pid {proc.name} ({argv[:160]})"
        except OSError:
            continue
    return "a process this user cannot see"


@pytest.fixture(scope="module")
def documented_port() -> int:
    """The port the page's `podman run` line publishes (8470, the console's default), once it
    is free. It is the README's first command's port too: with the demo serving there
    (`scripts/dev demo`, or any host on its default port), the documented line cannot run, and
    this test skips at once, naming the holder, before the image is built. Only a container
    holding it (another run of this very line, which ends on its own) is waited for."""
    argv = documented_run()
    port = int(argv[argv.index("-p") + 1].split(":")[0])
    holder = _holder(port)
    if holder is not None and not any(word in holder for word in CONTAINER_FORWARDERS):
        pytest.skip(f"port {port} is held by {holder}: the documented `podman run -p "
                    f"{port}:{port}` needs it (the demo of the README's first command serves "
                    "there); stop that program to run this test")
    if holder is not None:
        eventually(lambda: _port_free(port), f"port {port}, held by a container ({holder}), "
                   "free: another run of the documented line, ending on its own",
                   timeout=120, every=1)
    return port


def _link(log: str) -> str | None:
    """The first-admin link of the host's log (JSON lines), if it logged it yet."""
    for line in log.splitlines():
        if line.startswith("{") and "setup?token=" in line:
            return str(re.search(r"(\S+/setup\?token=[^\s\"]+)", json.loads(line)["msg"])[1])
    return None


def test_the_documented_run_serves_the_demo_and_logs_a_first_admin_link_a_browser_opens(
        documented_port: int, demo_image: str) -> None:
    """The page's `podman run` line, exactly, with no CONTAINERS_CONF (scripts/image's is for
    the build), in the foreground as a user runs it; Ctrl-C (SIGINT) ends it. Issue 48: it
    failed with `error setting rlimit type 7`, the link said http://0.0.0.0:8470/, and the
    image shipped whatever build/plugins held."""
    argv = documented_run()
    assert argv[-1] == demo_image, argv
    port = documented_port  # free, or this test skipped saying who holds it
    env = _env()  # no CONTAINERS_CONF: the machine's podman as it is
    ours = ["podman", "ps", "-aq", "--no-trunc", "--filter", f"ancestor={demo_image}"]
    before = set(subprocess.run(ours, capture_output=True, text=True, env=env).stdout.split())
    out = ROOT / "build" / "containers" / f"first-run-{uuid.uuid4().hex[:8]}.log"
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as sink:
        proc = subprocess.Popen(argv, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        run = Logged(proc, out)
        link = eventually(lambda: _link(out.read_text(errors="replace")), "the first-admin link",
                          timeout=180, every=0.5, watch=[run])
        # The address the published port is opened at, from this machine; it opens the page
        # that creates the first admin.
        assert link.startswith(f"http://127.0.0.1:{port}/setup?token="), link
        with urllib.request.urlopen(link, timeout=10) as r:
            page = r.read().decode()
            assert r.status == 200 and 'type="password"' in page, page[:2000]
        def loaded() -> str | None:
            log = out.read_text(errors="replace")
            return log if re.search(r"\d+ loaded, \d+ total", log) else None

        log = eventually(loaded, "its plugins loaded", every=0.5, watch=[run])
        n = len(DEMO_PLUGINS)
        assert f"{n} loaded, {n} total" in log, log[-3000:]
        assert f"console at http://127.0.0.1:{port}" in log, log[-3000:]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
        after = subprocess.run(ours, capture_output=True, text=True, env=env).stdout.split()
        for left in set(after) - before:
            subprocess.run(["podman", "rm", "-f", "-v", left], capture_output=True, env=env)
        out.unlink(missing_ok=True)
    assert proc.returncode == 0, proc.returncode


def test_the_demo_image_holds_the_demos_plugins_and_knows_it_is_a_container(
        demo_image: str, module_cache: Path) -> None:
    """/app/plugins is plugins/demo.yaml's plugins, not the scratch one left in the folder the
    build took them from, and /opt/omnicore/modules (the baked modules, root's, read-only)
    one entry for each, under the names the tests' cache gave the ones the image took from it
    (the same engine settings: nothing else was taken), its key beside it; and omnicore's
    own detection (not the image's OMNICORE_ENVIRONMENT) finds the
    container from what podman did (the bare machine's side: test_detect.py)."""
    argv = documented_run()
    script = ("import os; from omnicore.adapters import detect;"
              " print([os.access(p, os.W_OK) for p in ('/opt/omnicore/modules',"
              " '/opt/omnicore/modules.key')]);"
              " print(sorted(os.listdir('/opt/omnicore/modules')));"
              " print(sorted(os.listdir('/app/plugins'))); print(detect().describe())")
    flags = argv[:-1]
    if "-p" in flags:  # serves nothing: no port
        del flags[flags.index("-p"):flags.index("-p") + 2]
    probe = [*flags, "--entrypoint", "python3", demo_image, "-c", script]
    assert probe[:2] == ["podman", "run"], probe
    done = subprocess.run(probe, capture_output=True, text=True, env=_env(), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    writable, cached, listed, described = done.stdout.strip().splitlines()[-4:]
    assert writable == "[False, False]", writable  # the host's user cannot change them
    assert listed == repr([f"{name}.wasm" for name in DEMO_PLUGINS]), listed
    entries = [name for name in ast.literal_eval(cached) if not name.endswith(".mac")]
    shas = {name: hashlib.sha256((ROOT / "build" / "plugins" / f"{name}.wasm").read_bytes())
            .hexdigest() for name in DEMO_PLUGINS}
    assert sorted(e.split("-")[0] for e in entries) == sorted(shas.values()), entries
    assert sorted(ast.literal_eval(cached)) == sorted([*entries, *(e + ".mac" for e in entries)])
    taken = [e for e in entries if not e.startswith(shas[COMPILED_IN_THE_IMAGE])]
    assert all((module_cache / e).is_file() for e in taken), taken
    assert SCRATCH not in listed
    assert described.startswith("container ("), described
