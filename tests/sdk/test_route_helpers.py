"""Every SDK's route helper (specs/http-routes.md §8): a real plugin per SDK, built with the
real toolchain, called through the host with a request envelope built here byte by byte
(§2), its response block (§3) decoded here and asserted.

Each fixture plugin (``tests/sdk/route_<lang>/``) has the same four handlers: ``echo`` answers
201 with what the request carried in ``x-*`` headers, ``set-cookie`` twice and the request
body echoed byte for byte, ``hello`` the text convenience, ``info`` the JSON one (reading the
body as JSON), ``fail`` a handler that returns an error. The last test serves the JS fixture
through the host's own HTTP server on a route the config maps.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnicore import OmniApp
from omnicore.capabilities.builtin import builtin_registry
from omnicore.console import ConsoleModule
from omnicore.sandbox import Limits, PluginModule, SandboxEngine
from omnicore.sandbox.component import ComponentModule, ComponentRuntime
from omnicore.toolchains import assemblyscript, build, c, js, python, ruby, zig
from tests.compiler import COMPILER
from tests.hosts import CHEAP_PASSWORD_HASH
from tests.sdk.hosting import runtime
from tests.waiting import eventually

HERE = Path(__file__).parent

#: A body that is not UTF-8: the helpers pass bytes, never text.
RAW = b"\x00\xff\xfe ok \xc3("


def envelope(head: dict[str, Any], body: bytes = b"") -> bytes:
    raw = json.dumps(head).encode()
    return struct.pack("<I", len(raw)) + raw + body


def request(**over: Any) -> dict[str, Any]:
    head: dict[str, Any] = {
        "method": "POST", "path": "/items/42", "query": "x=1&x=2&y=",
        "query_params": {"x": ["1", "2"], "y": [""]},
        "params": {"id": "42", "name": "Ada"},
        "headers": {"user-agent": "probe/1", "content-type": "application/octet-stream"},
        "route": "items", "url": "http://127.0.0.1:8470/http/items/42?x=1&x=2&y=",
        "remote": "127.0.0.1", "auth": {"mode": "public"},
    }
    head.update(over)
    return head


def response(out: bytes) -> tuple[int, dict[str, Any], bytes]:
    """(status, headers, body) of a response block, checked against §3 as the host checks it."""
    assert len(out) >= 4, out
    (n,) = struct.unpack_from("<I", out)
    assert n <= len(out) - 4, out
    head = json.loads(out[4:4 + n])
    assert isinstance(head, dict)
    assert set(head) <= {"status", "headers"}, head
    return head.get("status", 200), head.get("headers", {}), out[4 + n:]


#: language -> why its toolchain cannot build here (None when it can); its fixture plugin is
#: tests/sdk/route_<language>.
CHECKS: dict[str, Callable[[], str | None]] = {
    "js": js.check,
    "ts": js.check,
    "python": python.check,
    "c": c.check,
    "zig": zig.check,
    "as": assemblyscript.check,
    "ruby": ruby.check,
}


@pytest.fixture(scope="module", params=list(CHECKS))
def call(request: pytest.FixtureRequest, engine: SandboxEngine,
         out_dir: Path) -> Iterator[Callable[[str, bytes], bytes]]:
    """``call(handler, input)`` on the language's fixture plugin, on the real host."""
    lang = request.param
    why = CHECKS[lang]()
    if why is not None:
        pytest.skip(f"{lang}: {why}")
    wasm = build(HERE / f"route_{lang}", out_dir, name=f"route-{lang}")
    module = PluginModule.load(engine, wasm)
    if isinstance(module, ComponentModule):    # Python and Ruby plugins are components
        with ComponentRuntime(engine, module, Limits(), registry=builtin_registry()) as crt:
            yield crt.call
    else:
        with runtime(engine, wasm, grants=[]) as rt:
            yield rt.call


def test_echo_gets_the_whole_request_and_sends_status_headers_and_raw_body(
        call: Callable[[str, bytes], bytes]) -> None:
    status, headers, body = response(call("echo", envelope(request(), RAW)))
    assert status == 201
    assert headers["x-method"] == "POST"
    assert headers["x-path"] == "/items/42"
    assert headers["x-query"] == "x=1&x=2&y="
    assert headers["x-first"] == "1"
    assert headers["x-all"] == "1,2"          # a repeated key keeps every value, in order
    assert headers["x-id"] == "42"
    assert headers["x-agent"] == "probe/1"    # header("User-Agent"): any case
    assert headers["x-route"] == "items"
    assert headers["content-type"] == "application/octet-stream"
    assert headers["set-cookie"] == ["a=1", "b=2"]   # a header sent once per value
    assert body == RAW


def test_a_hand_made_envelope_without_query_params_is_parsed_from_the_query(
        call: Callable[[str, bytes], bytes]) -> None:
    head = {"method": "GET", "path": "/", "query": "x=a+b&x=%C3%A9&z", "params": {"id": "7"}}
    status, headers, body = response(call("echo", envelope(head)))
    assert status == 201
    assert headers["x-all"] == "a b,é"
    assert headers["x-id"] == "7"
    assert headers["x-agent"] == "-"
    assert body == b""


def test_text_and_json_conveniences(call: Callable[[str, bytes], bytes]) -> None:
    status, headers, body = response(call("hello", envelope(request(method="GET"))))
    assert (status, body) == (200, b"hello Ada")
    assert headers == {"content-type": "text/plain; charset=utf-8"}

    status, headers, body = response(call("info", envelope(request(), b'{"n": 5}')))
    assert status == 202
    assert headers == {"content-type": "application/json"}
    assert json.loads(body) == {"id": "42", "n": 5}


def test_an_error_is_a_500_response_not_a_trap(call: Callable[[str, bytes], bytes]) -> None:
    status, headers, body = response(call("fail", envelope(request())))
    assert status == 500
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert body and b"database" not in body    # the error's text is logged, not sent
    # a body that is not JSON, read as JSON, is the function's error too
    status, _, _ = response(call("info", envelope(request(), b"\xff not json")))
    assert status == 500


@pytest.mark.parametrize("bad", [
    b"",
    b"\x01\x02",
    struct.pack("<I", 1000) + b"{}",
    struct.pack("<I", 2) + b"[]",
    struct.pack("<I", 3) + b"{x}",
    envelope({"path": "/no-method"}),
    envelope({"method": "GET", "path": 7}),
])
def test_a_malformed_envelope_is_answered_400(call: Callable[[str, bytes], bytes],
                                              bad: bytes) -> None:
    status, _, body = response(call("echo", bad))
    assert status == 400
    assert b"malformed request envelope" in body
    # the instance is unharmed: the next request is answered
    assert response(call("hello", envelope(request())))[0] == 200


def test_a_route_served_by_the_host_reaches_the_js_helper_over_real_http(
        tmp_path: Path, module_cache: Path) -> None:
    """End to end: a real HTTP request to the console's server, through the route the config
    maps, to the JS fixture's ``echo`` and ``hello``, and the answers back."""
    if js.check() is not None:
        pytest.skip(f"js: {js.check()}")
    root = tmp_path / "app"
    build(HERE / "route_js", root / "plugins", name="route-js")
    doc = {
        "name": "route-helpers", "data_dir": "data", "plugins_dir": "plugins",
        "sandbox": {"cache_dir": str(module_cache), "compiler": COMPILER},
        "console": {"port": 0, "password_hash": CHEAP_PASSWORD_HASH},
        "serve": {"routes": {
            "items": {"plugin": "route-js", "handler": "echo", "path": "/items/{id}",
                      "methods": ["POST"], "auth": "public"},
            "hello": {"plugin": "route-js", "handler": "hello", "path": "/hello/{name}",
                      "auth": "public"},
        }},
    }
    (root / "omnicore.yaml").write_text(json.dumps(doc))
    app = OmniApp(config_path=root / "omnicore.yaml", environ={}, entry_points=False)
    app.add_module(ConsoleModule())
    app.start()
    try:
        eventually(lambda: [p.state for p in app.plugins] == ["loaded"], "the plugin to load")
        url = app.get_module("console", ConsoleModule).url
        assert url is not None
        with httpx.Client(base_url=url, timeout=30) as client:
            r = client.post("/http/items/42", params=[("x", "1"), ("x", "2"), ("y", "")],
                            headers={"User-Agent": "probe/1"}, content=RAW)
            assert r.status_code == 201, r.text
            assert r.content == RAW
            assert (r.headers["x-method"], r.headers["x-path"]) == ("POST", "/items/42")
            assert r.headers["x-query"] == "x=1&x=2&y="
            assert (r.headers["x-first"], r.headers["x-all"]) == ("1", "1,2")
            assert (r.headers["x-id"], r.headers["x-route"]) == ("42", "items")
            assert r.headers["x-agent"] == "probe/1"
            assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]

            r = client.get("/http/hello/Ada%20L")
            assert (r.status_code, r.text) == (200, "hello Ada L")
            assert r.headers["content-type"] == "text/plain; charset=utf-8"
    finally:
        app.stop()
