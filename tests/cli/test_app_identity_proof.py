"""The app id is no proof (issue 61, second round): ``app-id.json`` is 0644 and ``/healthz``
answers the id to anyone, so a process on a dead host's port could answer it. The CLI sends a
random challenge and uses a host only when it answers the HMAC of it under the folder's secret
(``<data_dir>/app-key.json``, 0600, never served), asked without the admin token."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from omnicore.appid import APP_KEY_FILE, app_id, app_key, ensure_app_id, ensure_app_key, proof
from tests.host_fixtures import echo_wasm
from tests.hosts import Host


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "omnicore.cli", *args], capture_output=True,
                          text=True, timeout=120)


class Impostor:
    """A server on ``port`` answering ``/healthz`` with ``ident`` (and anything else 200),
    keeping each request's path and Authorization header."""

    def __init__(self, port: int, ident: str) -> None:
        self.seen: list[tuple[str, str | None]] = []
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                seen.append((self.path, self.headers.get("Authorization")))
                body = json.dumps({"status": "alive", "app_id": ident,
                                   "proof": "0" * 64}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_PUT = do_GET

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    started: list[Host] = []
    yield started
    for host in started:
        host.stop()


def test_the_secret_is_the_owner_s_and_a_copy_gets_its_own(tmp_path: Path) -> None:
    data = tmp_path / "a" / "data"
    ident = ensure_app_id(data)
    key = ensure_app_key(data, ident)
    assert stat.S_IMODE((data / APP_KEY_FILE).stat().st_mode) == 0o600
    assert app_key(data, ident) == key and ensure_app_key(data, ident) == key
    # A copied folder's key names the original's id and folder: it is not the copy's.
    copy = tmp_path / "b" / "data"
    copy.mkdir(parents=True)
    (copy / APP_KEY_FILE).write_bytes((data / APP_KEY_FILE).read_bytes())
    own = ensure_app_id(copy)
    assert app_key(copy, own) is None
    assert ensure_app_key(copy, own) != key
    assert len(proof(key, ident, "ab" * 16)) == 64


def test_an_impostor_on_the_dead_host_s_port_is_refused(
        tmp_path: Path, module_cache: Path, hosts: list[Host]) -> None:
    app = tmp_path / "demo"
    (app / "plugins").mkdir(parents=True)
    (app / "plugins" / "echo.wasm").write_bytes(echo_wasm("echo", "1.0.0"))
    (app / "omnicore.yaml").write_text(json.dumps({
        "name": "demo", "data_dir": ".omnicore", "plugins_dir": "plugins",
        "sandbox": {"cache_dir": str(module_cache)}}))
    data = app / ".omnicore"
    host = Host(app, data=data).start()
    hosts.append(host)
    url = host.remote().url
    host.until(host.ready, "the host ready")
    ok = cli("call", "echo", "version", "--app", str(app))
    assert ok.returncode == 0 and f"running host at {url}" in ok.stderr, ok.stderr
    ident = app_id(data)
    assert ident is not None
    console = data / "console.json"
    if not console.is_file():
        console = next(data.glob("instances/*/console.json"))
    left = json.loads(console.read_text())
    host.stop(signal.SIGKILL)  # dead: its console file stays behind, naming its port
    assert console.is_file()
    impostor = Impostor(urlsplit(url).port or 0, ident)
    try:
        # The pid check is no proof either (a pid is reused): the file names a live one.
        left["pid"] = os.getpid()
        console.write_text(json.dumps(left))
        called = cli("call", "echo", "version", "--app", str(app))
        assert called.returncode == 0 and called.stdout.strip() == "1.0.0", called.stderr
        assert f"not using the host at {url}" in called.stderr, called.stderr
        assert "cannot prove it is this folder's host" in called.stderr
        assert "running without it" in called.stderr and "embedded" in called.stderr
        # Only the challenge was asked, and the admin token never left the CLI.
        assert [p.split("?")[0] for p, _ in impostor.seen] == ["/healthz"]
        assert "challenge=" in impostor.seen[0][0]
        assert all(auth is None for _, auth in impostor.seen)
    finally:
        impostor.stop()
