"""An unmodified ``wasi:http/proxy`` component built from Rust served on a route (issue 65,
deliverable 1; specs/http-routes.md §9): tests/routes/proxy_rust/, a cdylib whose
canonical-ABI bindings are written by hand (wit-bindgen and the ``wasi`` crate are not
packaged here), built at test time by cargo (omnicore.toolchains.rust: Debian's rustc,
offline) for wasm32-unknown-unknown, made a component by wasm-tools (``component embed`` of
tests/routes/proxy_rust/world.wit over jco's WASI 0.2.12 WIT, then ``component new``),
dropped into a real host's plugin folder and asked over real HTTP."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from omnicore.toolchains import rust
from tests.routes.conftest import RouteHost

ROOT = Path(__file__).resolve().parents[2]
SOURCES = Path(__file__).parent / "proxy_rust"
OUT = ROOT / "build" / "test-plugins" / "proxy"
#: The WASI 0.2.12 WIT packages jco ships (scripts/setup-toolchains.sh installs jco into
#: build/js-tools); the crate imports wasi:http/types@0.2.12 and exports
#: wasi:http/incoming-handler@0.2.12, which the host serves (any 0.2.x).
WASI_WIT = (ROOT / "build" / "js-tools" / "node_modules" / "@bytecodealliance" / "jco" / "lib"
            / "wit" / "builtin" / "0.2.12")
WASM_TOOLS = Path(sys.executable).parent / "wasm-tools"


def _wasm_tools(*args: str, cwd: str) -> None:
    done = subprocess.run([str(WASM_TOOLS), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, f"wasm-tools {args[:2]} failed:\n{done.stderr}"


def proxy_rust_wasm() -> bytes:
    """tests/routes/proxy_rust built into a component (cached by the digest of its sources:
    about 5 s cold, cargo's part; a 38 KB component)."""
    assert (WASI_WIT / "wasi-http").is_dir(), "jco is not installed: run " \
                                               "scripts/setup-toolchains.sh"
    sources = [SOURCES / "Cargo.toml", SOURCES / "world.wit", SOURCES / "src" / "lib.rs"]
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    out = OUT / f"hello-rust-{digest}.wasm"
    if not out.is_file():
        OUT.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp.wasm")
        core = rust.compile(SOURCES, OUT)
        with tempfile.TemporaryDirectory() as scratch:
            shutil.copytree(WASI_WIT, Path(scratch) / "wit" / "deps")
            shutil.copy(SOURCES / "world.wit", Path(scratch) / "wit" / "world.wit")
            (Path(scratch) / "core.wasm").write_bytes(core)
            # the component-type section (the world's types), then the component: an import
            # whose flat signature differs from the WIT's fails here, not in the host
            _wasm_tools("component", "embed", "wit", "core.wasm", "--world", "hello",
                        "-o", "embedded.wasm", cwd=scratch)
            _wasm_tools("component", "new", "embedded.wasm", "-o", str(tmp), cwd=scratch)
        tmp.replace(out)
    return out.read_bytes()


def fnv1a(data: bytes) -> str:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) % 2**64
    return f"{h:016x}"


def start(route_host: Callable[..., RouteHost]) -> RouteHost:
    return route_host(
        plugins={"hellors.wasm": proxy_rust_wasm()},
        routes={"rs": {"plugin": "hellors", "handler": "handle", "path": "/rs/{rest...}",
                       "methods": ["GET", "POST", "PUT"], "auth": "public"}})


def test_a_rust_component_answers(route_host: Callable[..., RouteHost]) -> None:
    host = start(route_host)
    r = host.client.get("/http/rs/hello")
    assert r.status_code == 200, r.text
    assert r.text == "hello from rust"
    assert r.headers["content-type"] == "text/plain"

    # method, path with query, a header, the body's length and hash, as the guest read them
    r = host.client.post("/http/rs/a/info?q=1&r=%22", content=b"some body",
                         headers={"x-test": "yes"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.headers["x-app"] == "proxy-rust"
    assert r.headers["x-body-bytes"] == "9"
    got = r.json()
    assert got.pop("served") >= 1
    assert got == {"method": "POST", "path": "/rs/a/info?q=1&r=%22", "x_test": ["yes"],
                   "authorization": [], "cookie": [],
                   "body_bytes": 9, "body_fnv1a": fnv1a(b"some body")}
    r = host.client.put("/http/rs/info")
    assert r.status_code == 200 and r.json()["method"] == "PUT", r.text
    assert r.json()["x_test"] == [] and r.json()["body_bytes"] == 0

    # a body of many reads in (64 KiB a read at most), many 4 KiB writes out
    big = os.urandom(300_000)
    r = host.client.post("/http/rs/echo", content=big)
    assert r.status_code == 200, r.text
    assert r.content == big
    assert r.headers["x-body-fnv1a"] == fnv1a(big)

    r = host.client.get("/http/rs/nowhere?x=1")
    assert r.status_code == 404, r.text
    assert r.json() == {"error": "not found", "path": "/rs/nowhere?x=1"}


def test_a_panic_mid_body_is_500_and_a_fresh_instance_serves_next(
        route_host: Callable[..., RouteHost]) -> None:
    """The guest sets a 200 response, writes half its body, then panics (``panic = "abort"``:
    a trap). The client gets 500, never the 200 and half a body; the instance that trapped
    is discarded (its request count starts again) and the route answers on."""
    host = start(route_host)
    served = [host.client.get("/http/rs/info").json()["served"] for _ in range(3)]
    # one instance kept between requests that ended well: its count goes on
    assert served == [served[0], served[0] + 1, served[0] + 2], served

    r = host.client.get("/http/rs/panic")
    assert r.status_code == 500, r.text
    assert r.json()["error"] == "the handler failed"
    assert "half a body" not in r.text

    r = host.client.post("/http/rs/info", content=b"after")
    assert r.status_code == 200, r.text
    assert r.json()["served"] == 1  # a new instance, not the one that trapped
    assert r.json()["body_fnv1a"] == fnv1a(b"after")
    assert host.client.get("/healthz").status_code == 200


def test_path_with_query_is_the_path_as_the_client_wrote_it(
        route_host: Callable[..., RouteHost]) -> None:
    """wasi:http's path-with-query is the request target's: percent-encoded as sent. It was
    the decoded path, so an encoded '?' in the path became a query the client never sent
    (this component then matched no route: 404), and '%2523' became '%23'."""
    host = start(route_host)
    for path in ("/rs/a%3Fx=1/info", "/rs/a%2523/info?q=%3F", "/rs/caf%C3%A9%20x/info",
                 "/rs/plain/info?a=1&b"):
        r = host.client.get("/http" + path)
        assert r.status_code == 200, (path, r.text)
        assert r.json()["path"] == path


def test_the_component_imports_only_what_it_uses() -> None:
    """The hand-written bindings import three interfaces at 0.2.12 and export the handler
    (what the host links: specs/http-routes.md §9)."""
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "c.wasm").write_bytes(proxy_rust_wasm())
        done = subprocess.run([str(WASM_TOOLS), "component", "wit", "c.wasm"], cwd=scratch,
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    world = done.stdout.partition("}")[0]
    assert [line.strip() for line in world.splitlines() if line.strip().startswith(
        ("import", "export"))] == [
        "import wasi:io/error@0.2.12;", "import wasi:io/streams@0.2.12;",
        "import wasi:http/types@0.2.12;", "export wasi:http/incoming-handler@0.2.12;"]


def test_fields_reach_the_component_as_sent_less_what_the_route_keeps(
        route_host: Callable[..., RouteHost]) -> None:
    """wasi:http's fields are bytes, and a name may come twice: a component gets each field
    as the client sent it (they were joined into one value, decoded as UTF-8 with
    replacement: ``one, caf\ufffd``); the host's API token (``auth: token``) and the
    console's session cookie never reach it, the plugin's own cookies do."""
    host = route_host(
        plugins={"hellors.wasm": proxy_rust_wasm()},
        routes={"rs": {"plugin": "hellors", "handler": "handle", "path": "/rs/{rest...}",
                       "methods": ["GET"], "auth": "token"}})
    token = host.token("viewer")
    r = host.client.get("/http/rs/info", headers=[
        (b"x-test", b"one"), (b"authorization", f"Bearer {token}".encode()),
        (b"x-test", b"caf\xe9"), (b"cookie", b"omnicore_session=s3cret; theme=dark")])
    assert r.status_code == 200, r.text
    got = r.json()
    # (the component writes a byte past ASCII as \u00XX: 0xe9 is "\u00e9", not UTF-8's
    # replacement character's three bytes)
    assert got["x_test"] == ["one", "caf\u00e9"], got
    assert got["authorization"] == [], got
    assert got["cookie"] == ["theme=dark"], got
