"""omnicore:mcp (specs/abi.md §4.13): progress and questions to the MCP client of a call.

The guest is a WAT plugin: ``progress`` reports 50 of 100 with its input as the message and
answers the status (i32 LE); ``ask`` sends its input as the question and answers the host's
§3.3 block as its own result (so a refusal arrives as the call's error). The client is a fake
:class:`omnicore.capabilities.mcp.Client` set in ``CLIENT``, as the MCP server sets the real
one; the MCP server's side is tested in tests/mcp.
"""

from __future__ import annotations

import asyncio
import json
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
import wasmtime

from omnicore.app import OmniApp
from omnicore.capabilities.mcp import CLIENT, ClientRefused
from omnicore.errors import ConfigError, GuestError

MCP_WAT = r"""
(module
  (import "omnicore:mcp" "progress" (func $progress (param f64 f64 i32 i32) (result i32)))
  (import "omnicore:mcp" "ask" (func $ask (param i32 i32) (result i64)))
  (memory (export "memory") 8)
  (global $bump (mut i32) (i32.const 0x8000))
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (i32.and (i32.add (local.get $n)
                                                                     (i32.const 7))
                                                            (i32.const -8))))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  (func (export "progress") (param $p i32) (param $n i32) (result i64)
    (i32.store (i32.const 0x4000)
      (call $progress (f64.const 50) (f64.const 100) (local.get $p) (local.get $n)))
    (i64.or (i64.shl (i64.const 0x4000) (i64.const 32)) (i64.const 4)))
  (func (export "ask") (param $p i32) (param $n i32) (result i64)
    (call $ask (local.get $p) (local.get $n)))
)
"""

ELICIT = {"method": "elicitation/create",
          "params": {"message": "Who?", "requestedSchema": {"type": "object"}}}


class FakeClient:
    """Records what the plugin sent; answers questions with ``answer`` (or raises it)."""

    def __init__(self, answer: dict[str, Any] | Exception | None = None) -> None:
        self.progressed: list[tuple[float, float | None, str | None]] = []
        self.asked: list[tuple[str, Mapping[str, Any], float]] = []
        self.answer = answer if answer is not None else {"action": "accept",
                                                         "content": {"name": "Ada"}}

    def progress(self, progress: float, total: float | None, message: str | None) -> bool:
        self.progressed.append((progress, total, message))
        return True

    def ask(self, method: str, params: Mapping[str, Any], deadline: float,
            key: str | None = None) -> dict[str, Any]:
        self.asked.append((method, params, deadline))
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


def mcp_wasm(name: str) -> bytes:
    from omnicore.sandbox import wasmbin

    return wasmbin.set_custom_section(wasmtime.wat2wasm(MCP_WAT), "omnicore.manifest",
                                      json.dumps({"name": name}).encode())


@pytest.fixture
def app(make_app: Callable[..., OmniApp]) -> Iterator[OmniApp]:
    app = make_app(builtin_extensions=None, overrides={"sandbox": {"watch": False}})
    app.start()
    yield app
    app.stop(grace=0)


def progress(app: OmniApp, message: bytes = b"half") -> int:
    status: int = struct.unpack("<i", app.plugins.call("m", "progress", message))[0]
    return status


def test_progress_reaches_the_client_of_the_call(app: OmniApp) -> None:
    app.plugins.load(mcp_wasm("m"), grants=["mcp"])
    client = FakeClient()
    token = CLIENT.set(client)
    try:
        assert progress(app) == 0
        assert progress(app, b"") == 0
    finally:
        CLIENT.reset(token)
    assert client.progressed == [(50.0, 100.0, "half"), (50.0, 100.0, None)]


def test_outside_mcp_nobody_listens(app: OmniApp) -> None:
    app.plugins.load(mcp_wasm("m"), grants={"mcp": {"ask": ["elicitation"]}})
    assert progress(app) == -1  # NOT_FOUND
    with pytest.raises(GuestError, match="UNAVAILABLE: no MCP client waits on this call"):
        app.plugins.call("m", "ask", json.dumps(ELICIT).encode())


def test_a_question_is_answered_within_the_calls_deadline(app: OmniApp) -> None:
    app.plugins.load(mcp_wasm("m"), grants={"mcp": {"ask": ["elicitation"]}})
    client = FakeClient()
    token = CLIENT.set(client)
    try:
        before = time.monotonic()
        out = app.plugins.call("m", "ask", json.dumps(ELICIT).encode())
    finally:
        CLIENT.reset(token)
    assert json.loads(out) == {"action": "accept", "content": {"name": "Ada"}}
    [(method, params, deadline)] = client.asked
    assert (method, params) == (ELICIT["method"], ELICIT["params"])
    assert before < deadline <= before + 1.5  # the default 1 s deadline


def test_the_client_of_an_async_call_reaches_its_worker_thread(app: OmniApp) -> None:
    app.plugins.load(mcp_wasm("m"), grants=["mcp"])
    client = FakeClient()

    async def call() -> bytes:
        CLIENT.set(client)  # in this task's context only: acall carries it over
        return await app.plugins.acall("m", "progress", b"async")

    assert struct.unpack("<i", asyncio.run(call()))[0] == 0
    assert client.progressed == [(50.0, 100.0, "async")]


@pytest.mark.parametrize(("grant", "question", "error"), [
    (["mcp"], ELICIT, "DENIED: plugin 'm' may not ask the client for elicitation"),
    ({"mcp": {"ask": ["elicitation"]}},
     {"method": "sampling/createMessage", "params": {}}, "DENIED: .* for sampling"),
    ({"mcp": {"ask": ["elicitation"]}}, {"method": "tools/call", "params": {}}, "INVALID: "),
    ({"mcp": {"ask": ["elicitation"]}}, "not json", "INVALID: the question is not JSON"),
])
def test_questions_the_grant_does_not_allow_are_refused(app: OmniApp, grant: Any,
                                                        question: Any, error: str) -> None:
    app.plugins.load(mcp_wasm("m"), grants=grant)
    client = FakeClient()
    token = CLIENT.set(client)
    try:
        with pytest.raises(GuestError, match=error):
            raw = question if isinstance(question, str) else json.dumps(question)
            app.plugins.call("m", "ask", raw.encode())
    finally:
        CLIENT.reset(token)
    assert client.asked == []


def test_a_refusal_of_the_client_reaches_the_plugin(app: OmniApp) -> None:
    app.plugins.load(mcp_wasm("m"), grants={"mcp": {"ask": ["elicitation"]}})
    token = CLIENT.set(FakeClient(ClientRefused("UNAVAILABLE", "the client did not answer")))
    try:
        with pytest.raises(GuestError, match="UNAVAILABLE: the client did not answer"):
            app.plugins.call("m", "ask", json.dumps(ELICIT).encode())
        with pytest.raises(GuestError, match="TOO_LARGE"):
            app.plugins.call("m", "ask", b" " * (64 * 1024 + 1))
    finally:
        CLIENT.reset(token)


@pytest.mark.parametrize("options", [{"ask": ["email"]}, {"ask": "elicitation"}, {"x": 1}])
def test_bad_grants_are_refused(app: OmniApp, options: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"grant.mcp|grant .mcp."):
        app.plugins.load(mcp_wasm("m"), grants={"mcp": options})


def test_without_the_grant_the_plugin_does_not_run(app: OmniApp) -> None:
    app.plugins.load(mcp_wasm("m"))
    assert app.plugins.get("m").state == "needs-grant"
