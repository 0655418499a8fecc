"""Byte lists and strings through a component's flat face (sandbox/component/rawlift.py writes
it, canonplan.py plans it: a ``list<u8>`` a case of a list, a plugin's handler ``call`` a
function like any other, called with bytes): one memory copy each way, the same answers and
failures as wasmtime's value API (real components: WAT assembled by wasm-tools, a Python
plugin built by componentize-py)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import GuestError, InputTooLarge, OutputTooLarge, Trap
from omnicore.sandbox import PluginModule
from omnicore.sandbox.component import ComponentModule, ComponentRuntime
from omnicore.sandbox.component.canonplan import plan
from omnicore.sandbox.component.rawlift import RAW_PREFIX
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.limits import Limits
from tests.compiler import BASELINE
from tests.component_fixtures import js_component, python_plugin, wat_component, wat_plugin

HANDLER_CALL = "omnicore:plugin/handler@1.0.0#call"
DATA = bytes(range(256)) * 16  # 4 KiB, every byte value
MIB = bytes(range(256)) * 4096


@pytest.fixture(scope="module")
def engine(module_cache: Path) -> Iterator[SandboxEngine]:
    with SandboxEngine(cache_dir=module_cache, baseline=BASELINE) as eng:
        yield eng


def _module(engine: SandboxEngine, path: Any) -> ComponentModule:
    module = PluginModule.load(engine, path)
    assert isinstance(module, ComponentModule)
    return module


@pytest.fixture(scope="module")
def plugin(engine: SandboxEngine) -> ComponentModule:
    return _module(engine, wat_plugin("bytes-plugin", {"name": "bytes",
                                                       "handlers": ["echo", "fail"]}))


def _both(engine: SandboxEngine, module: ComponentModule,
          **limits: Any) -> tuple[ComponentRuntime, ComponentRuntime]:
    """The module with its flat faces, and the same module through wasmtime's value API."""
    slow = dataclasses.replace(module, flat={})
    return (ComponentRuntime(engine, module, Limits(**limits), registry=builtin_registry()),
            ComponentRuntime(engine, slow, Limits(**limits), registry=builtin_registry()))


def test_a_plugin_component_handler_gets_a_flat_face_hidden_from_its_world(
        plugin: ComponentModule) -> None:
    assert set(plugin.flat) == {HANDLER_CALL}
    assert plugin.call_path(HANDLER_CALL) == "flat"  # a face like any export's (issue 67)
    assert plugin.handlers == ("echo", "fail")
    report = plugin.describe()
    assert not any(RAW_PREFIX in line for line in report["world"])
    assert not any(e["name"].startswith(RAW_PREFIX) for e in report["exports"])


@pytest.mark.parametrize("data", [b"", b"x", DATA, MIB], ids=["empty", "1 B", "4 KiB", "1 MiB"])
def test_bytes_round_trip_byte_exact_as_through_the_value_api(
        engine: SandboxEngine, plugin: ComponentModule, data: bytes) -> None:
    fast, slow = _both(engine, plugin, max_input_bytes=2 * len(MIB),
                       max_output_bytes=2 * len(MIB))
    with fast, slow:
        assert fast.call("echo", data) == data
        if len(data) <= len(DATA):  # wasmtime's values cost ~1 ms per 4 KiB
            assert slow.call("echo", data) == data
        # The instance is kept and reused: a second call sees a fresh bump allocator.
        assert fast.call("echo", data[::-1]) == data[::-1]


def test_the_handler_call_by_name_answers_the_value_api_s_json(
        engine: SandboxEngine, plugin: ComponentModule) -> None:
    # The same face called with JSON (the C lane's plan, or Python's), not bytes.
    fast, slow = _both(engine, plugin)
    with fast, slow:
        for handler, data, want in (("echo", b"hi \x00\xff", b'{"ok":[104,105,32,0,255]}'),
                                    ("echo", b"", b'{"ok":[]}'),
                                    ("fail", "żółw".encode(), '{"err":"żółw"}'.encode())):
            payload = json.dumps([handler, list(data)]).encode()
            assert fast.call(HANDLER_CALL, payload) == slow.call(HANDLER_CALL, payload) == want


def test_a_guest_error_string_and_invalid_utf8_fail_as_through_the_value_api(
        engine: SandboxEngine, plugin: ComponentModule) -> None:
    fast, slow = _both(engine, plugin)
    with fast, slow:
        for rt in (fast, slow):
            with pytest.raises(GuestError) as err:
                rt.call("fail", "żółw 🐢".encode())
            assert err.value.guest_message == "żółw 🐢"
            with pytest.raises(Trap, match="invalid utf-8 sequence of 1 bytes from index 2"):
                rt.call("fail", b"ok\xff")
            with pytest.raises(Trap, match="incomplete utf-8 byte sequence from index 0"):
                rt.call("fail", "ż".encode()[:1])
            assert rt.call("echo", b"again") == b"again"


def test_over_limit_input_is_refused_before_anything_is_copied(
        engine: SandboxEngine, plugin: ComponentModule, monkeypatch: pytest.MonkeyPatch) -> None:
    with ComponentRuntime(engine, plugin, Limits(max_input_bytes=1000)) as rt:
        def copied(*_args: Any) -> Any:
            raise AssertionError("the input reached the guest")
        monkeypatch.setattr(rt, "_invoke_handler", copied)
        monkeypatch.setattr(rt._pool, "acquire", copied)
        with pytest.raises(InputTooLarge):
            rt.call("echo", bytes(1001))


def test_over_limit_output_is_refused_and_the_plugin_keeps_serving(
        engine: SandboxEngine, plugin: ComponentModule) -> None:
    fast, slow = _both(engine, plugin, max_output_bytes=1000)
    with fast, slow:
        for rt in (fast, slow):
            with pytest.raises(OutputTooLarge):
                rt.call("echo", bytes(1001))
            assert rt.call("echo", bytes(1000)) == bytes(1000)


def test_json_exports_take_the_flat_face_with_the_same_answers(engine: SandboxEngine) -> None:
    module = _module(engine, wat_component("bench"))
    # Plain exports take the host's canonical ABI (.canonplan: test_component_canon), as the
    # handler's call does.
    assert {"echo-bytes", "echo-string"} <= set(module.flat)
    fast, slow = _both(engine, module)
    with fast, slow:
        for export, arg in (("echo-bytes", list(DATA)), ("echo-bytes", []),
                            ("echo-string", "żółw 🐢 \u2028 \x00 \"q\"" * 50),
                            ("echo-string", "")):
            payload = json.dumps([arg]).encode()
            assert fast.call(export, payload) == slow.call(export, payload)
            assert json.loads(fast.call(export, payload)) == arg


def test_a_python_plugin_round_trips_4_kib_and_1_mib_through_its_flat_face(
        engine: SandboxEngine) -> None:
    module = _module(engine, python_plugin("python_logonly"))
    assert HANDLER_CALL in module.flat
    with ComponentRuntime(engine, module, Limits(max_input_bytes=2 * len(MIB),
                                                 max_output_bytes=2 * len(MIB)),
                          registry=builtin_registry()) as rt:
        for data in (DATA, MIB):
            assert rt.call("hello", data) == data.upper()


def test_a_string_round_trips_byte_exact_through_a_javascript_component(
        engine: SandboxEngine) -> None:
    # componentize-qjs makes two memories: its calls keep wasmtime's value API (the flat face
    # needs to know which memory is the function's), with the same answers.
    text = "żółw 🐢 " * 4096
    with ComponentRuntime(engine, _module(engine, js_component("types")), Limits()) as rt:
        out = rt.call("greet", json.dumps([text]).encode())
        assert json.loads(out) == f"Hello, {text}!"


def test_one_planner_gives_byte_lists_and_the_handler_call_a_list_s_face() -> None:
    planned = plan(wat_component("bench").read_bytes())
    assert planned["echo-bytes"][0].types == (("list", ("u8",)),)
    assert planned["echo-bytes"][0].core_params == ("i32", "i32")
    assert planned["echo-string"][0].types == (("string",),)
    handler = plan(wat_plugin("bytes-plugin", {"name": "bytes", "handlers": ["echo"]})
                   .read_bytes())[HANDLER_CALL][0]
    assert handler.types == (("string",), ("list", ("u8",)))
    assert handler.result_type == ("result", ("list", ("u8",)), ("string",))
    assert handler.realloc is not None and handler.core_result == ("i32",)
    # A section it does not read (start): the component is left as it is.
    assert plan(b"\x00asm\x0d\x00\x01\x00\x09\x01\x00") == {}
