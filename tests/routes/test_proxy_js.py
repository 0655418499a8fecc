"""An unmodified ``wasi:http/proxy`` component built by componentize-js served on a route
(issue 65, deliverable 1; specs/http-routes.md §9): tests/routes/proxy_js/app.js, a ``fetch``
event listener as componentize-js users write one, built at test time with the
componentize-js that scripts/setup-toolchains.sh installs into build/js-tools, dropped into a
real host's plugin folder and asked over real HTTP."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from omnicore.routes.proxy import one_request_per_instance
from omnicore.sandbox.wasmbin import processed_by, set_custom_section
from tests.routes.conftest import RouteHost
from tests.routes.test_proxy_components import proxy_wasm

ROOT = Path(__file__).resolve().parents[2]
SOURCES = Path(__file__).parent / "proxy_js"
TOOLS = ROOT / "build" / "js-tools" / "node_modules"
OUT = ROOT / "build" / "test-plugins" / "proxy"
#: StarlingMonkey (componentize-js's engine) exports wasi:http/incoming-handler@0.2.10, and a
#: world must name that version. jco ships the whole WASI 0.2 WIT set at 0.2.12 (its 0.2.10
#: folder holds only a few packages): 0.2 patch releases differ in the version only, so the
#: build writes 0.2.12's packages as 0.2.10.
WASI_WIT = TOOLS / "@bytecodealliance" / "jco" / "lib" / "wit" / "builtin" / "0.2.12"


def proxy_js_wasm() -> bytes:
    """tests/routes/proxy_js/app.js built by componentize-js (cached by the digest of its
    sources and the tool's version: 30-60 s cold; a 12.8 MB component)."""
    tool = TOOLS / ".bin" / "componentize-js"
    assert tool.is_file(), "componentize-js is not installed: run scripts/setup-toolchains.sh"
    version = json.loads((TOOLS / "@bytecodealliance" / "componentize-js" /
                          "package.json").read_text())["version"]
    sources = [SOURCES / "world.wit", SOURCES / "app.js"]
    digest = hashlib.sha256(version.encode() + b"".join(p.read_bytes() for p in sources))
    out = OUT / f"hello-js-{digest.hexdigest()[:12]}.wasm"
    if not out.is_file():
        OUT.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp.wasm")
        with tempfile.TemporaryDirectory() as scratch:
            wit = Path(scratch) / "wit"
            shutil.copytree(WASI_WIT, wit / "deps")
            for f in (wit / "deps").rglob("*.wit"):
                f.write_text(re.sub(r"@0\.2\.12\b", "@0.2.10", f.read_text()))
            shutil.copy(SOURCES / "world.wit", wit / "world.wit")
            done = subprocess.run(
                [str(tool), str(SOURCES / "app.js"), "--wit", "wit", "--world-name",
                 "hello", "-o", str(tmp)], cwd=scratch, capture_output=True, text=True,
                timeout=600)
        assert done.returncode == 0, f"componentize-js failed:\n{done.stdout}\n{done.stderr}"
        tmp.replace(out)
    return out.read_bytes()


def start(route_host: Callable[..., RouteHost]) -> RouteHost:
    return route_host(
        plugins={"hellojs.wasm": proxy_js_wasm()},
        routes={"js": {"plugin": "hellojs", "handler": "handle", "path": "/js/{rest...}",
                       "methods": ["GET", "POST"], "auth": "public"}})


def test_a_componentize_js_component_answers(route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host)
    r = host.client.get("/http/js/hello")
    assert r.status_code == 200, r.text
    assert r.text == "hello from js"
    assert r.headers["content-type"] == "text/plain"

    r = host.client.post("/http/js/a/b?q=1", content=b"some body", headers={"x-test": "yes"})
    assert r.status_code == 201, r.text
    assert re.fullmatch(r"POST /js/a/b\?q=1 9 bytes; x-test=yes; served=1; body=some body",
                        r.text), r.text
    assert r.headers["x-app"] == "proxy-js"


def test_requests_in_a_row_are_each_answered(route_host: Callable[..., RouteHost]) -> None:
    """StarlingMonkey answers one request per instance: every request after the first is
    still answered, by an instance of its own."""
    host = start(route_host)
    for i in range(5):
        body = f"request {i}".encode()
        r = host.client.post(f"/http/js/n/{i}", content=body)
        assert r.status_code == 201, (i, r.text)
        assert r.text.endswith(f"; served=1; body=request {i}"), (i, r.text)
    assert host.client.get("/healthz").status_code == 200


def test_concurrent_requests_are_each_answered(route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host)
    assert host.burst("/http/js/hello", n=8) == [200] * 8
    assert host.client.post("/http/js/after", content=b"x").text.endswith("served=1; body=x")


def test_the_toolchain_is_read_from_the_producers_section() -> None:
    """componentize-js's components get an instance per request, componentize-py's are
    reused (its producers section names other tools): read from the bytes, at load."""
    js, py = processed_by(proxy_js_wasm()), processed_by(proxy_wasm())
    assert "ComponentizeJS" in js
    assert py and "ComponentizeJS" not in py
    assert one_request_per_instance(js) == "ComponentizeJS"
    assert one_request_per_instance(py) is None
    assert one_request_per_instance(()) is None
    # A malformed section is a hint read as far as it goes, never an error.
    assert processed_by(set_custom_section(proxy_wasm(), "producers", b"\x05\x01")) == ()


def test_a_component_loaded_from_bytes_gets_a_fresh_instance_per_request(
        route_host: Callable[..., RouteHost]) -> None:
    """A plugin with no file (the embedding API's load of bytes) is judged by its bytes: each
    request answered (a reused componentize-js instance would answer the second with 502)."""
    host = route_host(plugins={}, routes={
        "js": {"plugin": "frombytes", "handler": "handle", "path": "/js/{rest...}",
               "methods": ["GET", "POST"], "auth": "public"}})
    info = host.app.plugins.load(proxy_js_wasm(), name="frombytes")
    assert info.state == "loaded", info
    for i in range(3):
        r = host.client.post(f"/http/js/n{i}", content=b"x")
        assert r.status_code == 201, (i, r.text)
        assert r.text.endswith("served=1; body=x"), r.text
