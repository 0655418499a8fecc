"""A planted secret never leaves the host: not in logs, events, errors, ``omnicore config
show``, metrics, a failing connector call, or what a plugin receives and logs.

A real HTTP server on 127.0.0.1 plays the upstream API and checks the credential arrives; it
also echoes the Authorization header back (as some APIs do in errors), raw and URL-encoded,
base64'd, hex and \\u-escaped, which the host must cut before the plugin sees it. Every output
is collected, grepped for the value, its base64 and its URL-encoded forms, and decoded
(tests/egress/echo.py) to find it in any other spelling.
"""

from __future__ import annotations

import base64
import json
import logging
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import wasmtime

from omnicore.app import OmniApp
from omnicore.errors import GuestError
from tests.egress.echo import leaks

SECRET = "sk_live_4f9b2c7e1d8a6053"

LEAKY_WAT = r"""
(module
  (import "omnicore:http" "request" (func $req (param i32 i32 i32 i32) (result i64)))
  (import "omnicore:log" "write" (func $log (param i32 i32 i32)))
  (memory (export "memory") 4)
  (global $bump (mut i32) (i32.const 0x10000))
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.and (i32.add (i32.add (global.get $bump) (local.get $n))
                                        (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  ;; calls the connector with its input as the request JSON, logs whatever came back (the
  ;; response block or the error message) at error level, and returns it unchanged
  (func (export "call") (param $p i32) (param $n i32) (result i64)
    (local $r i64)
    (local.set $r (call $req (local.get $p) (local.get $n) (i32.const 0) (i32.const 0)))
    (call $log (i32.const 4) (i32.wrap_i64 (i64.shr_u (local.get $r) (i64.const 32)))
               (i32.wrap_i64 (i64.and (local.get $r) (i64.const 0x7fffffff))))
    (local.get $r))
)
"""


class Api:
    """Answers /ok with the Authorization it got, /fail with a 401 quoting it."""

    def __init__(self) -> None:
        self.auth: list[str] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                auth = self.headers.get("authorization") or ""
                api.auth.append(auth)
                # Also in the spellings an API's encoder might give it back in.
                spelled = (f"{quote(auth, safe='')} {base64.b64encode(auth.encode()).decode()} "
                           f"{auth.encode().hex()}")
                escaped = "".join(f"\\u{ord(c):04x}" for c in auth)
                body = (f"you sent {auth} ({spelled})" if self.path.startswith("/v1/ok")
                        else f'{{"error": "bad token {auth}", "was": "{escaped}"}}').encode()
                self.send_response(200 if self.path.startswith("/v1/ok") else 401)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("X-Echo", auth)
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api() -> Iterator[Api]:
    server = Api()
    yield server
    server.close()


def _forms(value: str) -> list[bytes]:
    return [value.encode(), base64.b64encode(value.encode()),
            base64.b64encode(f"bot:{value}".encode()), quote(value).encode(),
            value[:12].encode()]


def test_a_planted_secret_appears_in_no_output(tmp_path: Path, api: Api,
                                               caplog: pytest.LogCaptureFixture) -> None:
    import socket

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    dead_port = closed.getsockname()[1]
    closed.close()
    appdir = tmp_path / "app"
    appdir.mkdir()
    config = {
        "name": "leak", "data_dir": str(appdir / "data"), "plugins_dir": str(appdir / "plugins"),
        "sandbox": {"watch": False},
        "connectors": {
            "api": {"base_url": f"http://127.0.0.1:{api.port}/v1", "auth": "bearer",
                    "secret": "api_key"},
            "basic": {"base_url": f"http://127.0.0.1:{api.port}/v1", "auth": "basic",
                      "username": "bot", "secret": "api_key"},
            "query": {"base_url": f"http://127.0.0.1:{api.port}/v1", "auth": "query",
                      "param": "key", "secret": "api_key"},
            "down": {"base_url": f"http://127.0.0.1:{dead_port}", "auth": "bearer",
                     "secret": "api_key"},
        },
        "plugins": {"leaky": {"grants": {"http": {"connectors": ["api", "basic", "query",
                                                                 "down"]}}}},
    }
    (appdir / "omnicore.yaml").write_text(json.dumps(config))
    outputs: list[str] = []
    caplog.set_level(logging.DEBUG)
    app = OmniApp(config_path=appdir / "omnicore.yaml", entry_points=False, environ={})
    app.events.subscribe("*", lambda event: outputs.append(repr(event)))
    app.start()
    try:
        app.secrets.set("api_key", SECRET)
        from omnicore.sandbox import wasmbin

        wasm = wasmbin.set_custom_section(wasmtime.wat2wasm(LEAKY_WAT), "omnicore.manifest",
                                          json.dumps({"name": "leaky"}).encode())
        (appdir / "plugins").mkdir(exist_ok=True)
        (appdir / "plugins" / "leaky.wasm").write_bytes(wasm)
        app.plugins.load(appdir / "plugins" / "leaky.wasm")
        received = []
        for connector, path in (("api", "/ok"), ("api", "/fail"), ("basic", "/ok"),
                                ("query", "/ok?x=1"), ("query", "/fail"), ("down", "/x"),
                                ("api", "/../escape")):
            req = json.dumps({"method": "GET", "connector": connector, "path": path}).encode()
            try:
                received.append(app.plugins.call("leaky", "call", req))
            except GuestError as exc:
                outputs.append(str(exc))
                outputs.append(exc.guest_message)
        # The credentials did arrive upstream.
        assert f"Bearer {SECRET}" in api.auth
        assert any(a.startswith("Basic ") for a in api.auth)
        assert len(received) == 5 and len(outputs) >= 2
        # The header-auth answers echoed the credential; the plugin got it cut out.
        echoed = [b for b in received if b"Bearer " in b or b"Basic " in b]
        assert len(echoed) == 3
        for b in echoed:
            head_len = struct.unpack("<I", b[:4])[0]
            assert b"[REDACTED]" in b[4 + head_len:], b
        outputs.extend(r.decode("utf-8", "replace") for r in received)
        outputs.extend(f"{line.level} {line.message}" for line in app.plugins.logs("leaky")
                       .lines(1000))
        info: Any = app.plugins.get("leaky").as_dict()
        outputs.append(json.dumps(info, default=str))
        outputs.append(app.metrics.render().decode())
        outputs.append(repr(app.secrets))
        outputs.append(json.dumps([c.__dict__ for c in app.connectors.values()], default=str))
    finally:
        app.stop(grace=0)
    shown = subprocess.run([sys.executable, "-m", "omnicore.cli", "config", "show",
                            str(appdir), "--json"], capture_output=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert b"connectors.api.base_url" in shown.stdout
    outputs.append(shown.stdout.decode() + shown.stderr.decode())
    outputs.extend(r.getMessage() + repr(r.__dict__) for r in caplog.records)
    db = b"".join(p.read_bytes() for p in (appdir / "data").iterdir()
                  if p.name.startswith("omnicore.db"))
    text = "\n".join(outputs).encode()
    for form in _forms(SECRET):
        assert form not in text, form
        assert form not in db, form
    assert leaks(text, SECRET) == [] and leaks(db, SECRET) == []
