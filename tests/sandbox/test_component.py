"""Components in the sandbox: loaded from their header, called with the JSON mapping of
specs/components.md, under the same limits as core modules (real components, built at test
time from tests/sandbox/components/)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest

from omnicore.errors import (
    DeadlineExceeded,
    FuelExhausted,
    HandlerNotFound,
    InvalidInput,
    InvalidModule,
    MemoryLimitExceeded,
    PluginLoadError,
    Trap,
)
from omnicore.sandbox import PluginModule
from omnicore.sandbox.component import ComponentModule, ComponentRuntime
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.limits import Limits
from tests.compiler import BASELINE
from tests.component_fixtures import js_component, wat_component
from tests.waiting import fastest

SHAPES = "test:types/shapes"


@pytest.fixture(scope="module")
def engine() -> Iterator[SandboxEngine]:
    with SandboxEngine(baseline=BASELINE) as eng:
        yield eng


def _runtime(engine: SandboxEngine, path: Any, **limits: Any) -> ComponentRuntime:
    module = PluginModule.load(engine, path)
    assert isinstance(module, ComponentModule)
    return ComponentRuntime(engine, module, Limits(**limits))


@pytest.fixture(scope="module")
def types(engine: SandboxEngine) -> Iterator[ComponentRuntime]:
    with _runtime(engine, js_component("types")) as rt:
        yield rt


@pytest.fixture(scope="module")
def limits_rt(engine: SandboxEngine) -> Iterator[ComponentRuntime]:
    with _runtime(engine, wat_component("limits"), timeout_ms=300,
                  max_memory_bytes=8 * 2**20, max_table_elements=5000) as rt:
        yield rt


def call(rt: ComponentRuntime, export: str, *args: Any) -> Any:
    return json.loads(rt.call(export, json.dumps(args).encode()))


def test_a_component_is_detected_from_its_header_and_shows_its_world(
        engine: SandboxEngine) -> None:
    module = PluginModule.load(engine, js_component("types"), "types")
    assert module.abi == "component"
    report = module.describe()
    assert report["abi"] == "component"
    assert "export greet: func(name: string) -> string;" in report["world"]
    assert f"export {SHAPES} {{" in report["world"]
    assert any("area: func(s: variant { circle(u32), square(record { x: s32, y-coord: s32 })"
               in line for line in report["world"])
    assert f"{SHAPES}#centroid" in module.handlers
    # componentize-qjs imports WASI 0.2 by default; each is listed with what it gets.
    assert report["imports"]["wasi:clocks/wall-clock@0.2.12"] == ["supplied"]


def test_scalars_and_strings(types: ComponentRuntime) -> None:
    assert call(types, "greet", "Ada") == "Hello, Ada!"
    assert call(types, "greet", "żółw 🐢") == "Hello, żółw 🐢!"
    assert call(types, "add", 200, 55) == 255
    assert call(types, "half", 3) == 1.5
    assert call(types, "upper", "é") == "É"
    assert call(types, "negate", True) is False
    assert call(types, "nothing") is None


def test_records_variants_enums_flags_tuples(types: ComponentRuntime) -> None:
    assert call(types, f"{SHAPES}#area", {"square": {"x": 3, "y-coord": 4}}) == 12
    assert call(types, f"{SHAPES}#area", {"circle": 2}) == 12
    assert call(types, f"{SHAPES}#area", {"empty": None}) == 0
    pts = [{"x": 1, "y-coord": 2}, {"x": 3, "y-coord": 4}]
    assert call(types, f"{SHAPES}#centroid", pts) == {"x": 2, "y-coord": 3}
    assert call(types, f"{SHAPES}#paint", "green", ["exec", "read"]) == ["green",
                                                                         ["read", "exec"]]


def test_options_results_lists(types: ComponentRuntime) -> None:
    assert call(types, "maybe-len", None) is None
    assert call(types, "maybe-len", "abc") == 3
    assert call(types, f"{SHAPES}#centroid", []) is None
    assert call(types, "safe-div", 7, 2) == {"ok": 3}
    assert call(types, "safe-div", 1, 0) == {"err": "division by zero"}
    assert call(types, "check", True) == {"ok": None}
    assert call(types, "check", False) == {"err": "not ok"}
    assert call(types, "invert", [0, 1, 255]) == [255, 254, 0]
    assert call(types, "invert", []) == []
    every = list(range(256)) * 16  # 4 KiB: written and read whole, not element by element
    assert call(types, "invert", every) == [255 - b for b in every]


def test_64_bit_integers_are_exact_beyond_2_53(limits_rt: ComponentRuntime) -> None:
    assert call(limits_rt, "add64", 2**64 - 2, 1) == 2**64 - 1
    assert call(limits_rt, "add64", 2**53, 1) == 2**53 + 1
    raw = limits_rt.call("add64", b"[18446744073709551614, 1]")
    assert raw == b"18446744073709551615"


@pytest.mark.parametrize(("export", "args", "where", "expected"), [
    ("add", [300, 1], "a", "a u8 (0..255)"),
    ("add", [1, -1], "b", "a u8 (0..255)"),
    ("add", [True, 1], "a", "an integer (u8)"),
    ("add", [1.5, 1], "a", "an integer (u8)"),
    ("greet", [7], "name", "a string, got 7"),
    ("upper", ["ab"], "c", "a one-character string"),
    ("upper", ["\ud800"], "c", "a one-character string (a Unicode scalar value)"),
    ("greet", ["a\udc00"], "name", "a string of Unicode scalar values"),
    ("half", ["1.5"], "x", "a number (f64"),
    ("half", [None], "x", "a number (f64"),
    ("negate", [1], "b", "true or false"),
    ("invert", [[1, 256]], "b[1]", "a u8 (0..255)"),
    ("invert", [[0, 1, True]], "b[2]", "an integer (u8)"),  # bytes() would take True as 1
    ("invert", [[0, -1]], "b[1]", "a u8 (0..255)"),
    ("invert", ["AQI="], "b", "an array (list<u8>)"),
    (f"{SHAPES}#centroid", [[{"x": 1, "y-coord": 2}, {"x": "3", "y-coord": 4}]], "pts[1].x",
     "an integer (s32)"),
    (f"{SHAPES}#centroid", [[{"x": 1}]], "pts[0].y-coord",
     "s32, got nothing (the field is missing)"),
    (f"{SHAPES}#centroid", [[{"x": 1, "y-coord": 2, "z": 3}]], "pts[0].z", "no such field"),
    (f"{SHAPES}#centroid", [[{"x": 2**31, "y-coord": 0}]], "pts[0].x", "an s32"),
    (f"{SHAPES}#area", [{"triangle": 3}], "s",
     'one of {"circle": ...}, {"square": ...}, {"empty": ...}, got {"triangle": 3}'),
    (f"{SHAPES}#area", [{"circle": 1, "empty": None}], "s", "an object with one key"),
    (f"{SHAPES}#area", [{"empty": 1}], "s.empty", "null (this case has no payload)"),
    (f"{SHAPES}#area", [{"square": {"x": 1, "y-coord": 2**31}}], "s.square.y-coord", "an s32"),
    (f"{SHAPES}#paint", ["purple", []], "c", "one of 'red', 'green', 'blue'"),
    (f"{SHAPES}#paint", ["red", ["read", "root"]], "p[1]", "one of 'read', 'write', 'exec'"),
    (f"{SHAPES}#paint", ["red", ["read", "read"]], "p", "each flag at most once"),
    ("safe-div", [2**31, 1], "a", "an s32"),
])
def test_a_value_that_does_not_fit_is_refused_before_the_call_with_its_path(
        types: ComponentRuntime, export: str, args: list[Any], where: str,
        expected: str) -> None:
    created = types.instances_created
    with pytest.raises(InvalidInput) as info:
        types.call(export, json.dumps(args).encode())
    assert f"argument {where}: expected {expected}" in str(info.value)
    assert "nothing was called" in str(info.value)
    assert types.instances_created == created  # no instance was spent on it
    assert call(types, "greet", "next") == "Hello, next!"


def test_out_of_range_integers_never_wrap(limits_rt: ComponentRuntime) -> None:
    # wasmtime-py would pass u8 256 as 0 and u64 2**64 as 0: both refused here.
    with pytest.raises(InvalidInput, match=r"argument x: expected a u8 \(0\.\.255\), got 256"):
        limits_rt.call("small", b"[256]")
    with pytest.raises(InvalidInput, match=r"argument a: expected a u64"):
        limits_rt.call("add64", json.dumps([2**64, 0]).encode())
    with pytest.raises(InvalidInput, match=r"argument b: expected a u64"):
        limits_rt.call("add64", b"[0, -1]")
    assert call(limits_rt, "small", 254) == 255


@pytest.mark.parametrize(("data", "message"), [
    (b"not json", "the input is not JSON"),
    (b'{"nom": "Ada"}', "no parameter 'nom' (parameters: name)"),
    (b'"Ada"', "takes 1 argument(s) [name: string] as a JSON array"),
    (b'["Ada", "extra"]', "takes 1 argument(s)"),
    (b"[]", "takes 1 argument(s)"),
    (b"[" * 100_000 + b"]" * 100_000, "nests too deeply"),
    (b'["\xff"]', "not JSON"),
])
def test_arguments_must_be_a_json_array_or_object_of_the_parameters(
        types: ComponentRuntime, data: bytes, message: str) -> None:
    with pytest.raises(InvalidInput) as info:
        types.call("greet", data)
    assert message in str(info.value)


def test_an_unknown_export_is_handler_not_found(types: ComponentRuntime) -> None:
    with pytest.raises(HandlerNotFound, match="has no export 'area'"):
        types.call("area", b"[]")  # nested exports are named interface#function
    with pytest.raises(HandlerNotFound):
        types.call(f"{SHAPES}#nope", b"[]")


def test_a_trap_is_typed_and_the_next_call_is_served(types: ComponentRuntime,
                                                     limits_rt: ComponentRuntime) -> None:
    discarded = types.instances_discarded
    with pytest.raises(Trap) as info:
        types.call("boom", b"[]")
    assert "boom from js" in str(info.value)  # what the guest said before trapping
    assert types.instances_discarded == discarded + 1
    assert call(types, "greet", "after") == "Hello, after!"
    with pytest.raises(Trap, match="unreachable"):
        limits_rt.call("boom", b"[]")
    assert call(limits_rt, "small", 1) == 2


def test_an_endless_loop_hits_the_deadline(limits_rt: ComponentRuntime,
                                           engine: SandboxEngine) -> None:

    def spin() -> None:
        with pytest.raises(DeadlineExceeded) as info:
            limits_rt.call("spin", b"[]")
        assert info.value.limit == "timeout_ms"

    assert fastest(spin) < 0.3 + 1.5
    assert call(limits_rt, "small", 1) == 2


def test_an_endless_js_loop_hits_the_deadline(engine: SandboxEngine) -> None:
    with _runtime(engine, js_component("types"), timeout_ms=200) as rt:

        def spin() -> None:
            with pytest.raises(DeadlineExceeded):
                rt.call("spin", b"[]")
            assert call(rt, "greet", "again") == "Hello, again!"

        assert fastest(spin) < 0.2 + 1.5


def test_a_memory_bomb_is_memory_limit_exceeded_and_its_instance_replaced(
        limits_rt: ComponentRuntime) -> None:
    pages = call(limits_rt, "grow")  # refused growth a guest survives is no failure
    assert 8 * 2**20 - 2**20 <= pages * 65536 <= 8 * 2**20
    discarded = limits_rt.instances_discarded
    with pytest.raises(MemoryLimitExceeded, match=r"limits\.max_memory_bytes \(8388608\)") \
            as info:
        limits_rt.call("bomb", b"[]")
    assert info.value.limit == "max_memory_bytes"
    assert limits_rt.instances_discarded == discarded + 1
    assert call(limits_rt, "small", 3) == 4


def test_growing_up_to_the_limit_succeeds_and_one_page_past_it_does_not(
        limits_rt: ComponentRuntime) -> None:
    assert call(limits_rt, "upto", 127) == 127
    assert call(limits_rt, "upto", 128) == 128  # exactly the limit: 8 MiB
    with pytest.raises(MemoryLimitExceeded):
        limits_rt.call("upto", b"[129]")
    assert call(limits_rt, "upto", 100) == 100  # a fresh instance, not the refused one


def test_an_argument_the_host_lowers_past_the_limit_is_memory_limit_exceeded(
        limits_rt: ComponentRuntime) -> None:
    # The sibling path to guest memory: the host's lowering of a string grows memory
    # through the component's realloc, and that growth is refused the same way.
    assert call(limits_rt, "length", "x" * 1000) == 1000
    with pytest.raises(MemoryLimitExceeded):
        limits_rt.call("length", json.dumps(["x" * (9 * 2**20)]).encode())
    assert call(limits_rt, "length", "after") == 5


def test_a_trap_without_a_refused_growth_stays_a_trap(limits_rt: ComponentRuntime) -> None:
    call(limits_rt, "grow")  # a refusal in an earlier call is not carried into the next
    with pytest.raises(Trap) as info:
        limits_rt.call("boom", b"[]")
    assert not isinstance(info.value, MemoryLimitExceeded)


def test_initial_memory_over_the_limit_is_refused_at_load(engine: SandboxEngine) -> None:
    module = PluginModule.load(engine, wat_component("bigmem"))
    with pytest.raises(PluginLoadError, match="declares more initial memory"):
        ComponentRuntime(engine, module, Limits(max_memory_bytes=8 * 2**20))  # type: ignore[arg-type]
    with ComponentRuntime(engine, module,  # type: ignore[arg-type]
                          Limits(max_memory_bytes=16 * 2**20)) as rt:
        assert call(rt, "one") == 1


def test_a_table_cannot_grow_past_the_limit(limits_rt: ComponentRuntime) -> None:
    # max_table_elements is 5,000: growth by 1,000 from 1 stops at 4,001. wasmtime-py does
    # not report a refused table.grow, so a guest that then traps is a Trap
    # (specs/components.md "Limits"); its instance is replaced all the same.
    assert call(limits_rt, "tables") == 4001
    discarded = limits_rt.instances_discarded
    with pytest.raises(Trap):
        limits_rt.call("table-bomb", b"[]")
    assert limits_rt.instances_discarded == discarded + 1
    assert call(limits_rt, "tables") == 4001


def test_a_js_memory_bomb_is_memory_limit_exceeded_and_the_next_call_is_served(
        engine: SandboxEngine) -> None:
    with _runtime(engine, js_component("types"), max_memory_bytes=16 * 2**20) as rt:
        with pytest.raises(MemoryLimitExceeded, match="out of memory"):
            rt.call("bomb", b"[]")
        assert call(rt, "greet", "survivor") == "Hello, survivor!"


def test_an_import_nothing_supplies_is_refused_at_load(engine: SandboxEngine) -> None:
    module = PluginModule.load(engine, wat_component("foreign"))
    assert module.describe()["imports"] == {"acme:db/query": ["nothing supplies it"]}
    with pytest.raises(InvalidModule, match="imports acme:db/query, which no capability"):
        ComponentRuntime(engine, module)  # type: ignore[arg-type]


def test_an_unsupplied_wasi_interface_loads_and_only_its_use_fails(
        engine: SandboxEngine) -> None:
    module = PluginModule.load(engine, wat_component("wasi-other"))
    assert module.describe()["imports"] == {  # resources in an interface are linked too
        "wasi:keyvalue/store@0.2.0-draft": ["imported, not granted"]}
    with ComponentRuntime(engine, module) as rt:  # type: ignore[arg-type]
        assert call(rt, "answer") == 42
        with pytest.raises(Trap):
            rt.call("use-kv", b"[]")
        assert call(rt, "answer") == 42


@pytest.fixture(scope="module")
def httpdeny(engine: SandboxEngine) -> Iterator[ComponentRuntime]:
    with _runtime(engine, js_component("httpdeny")) as rt:
        yield rt


def test_ungranted_wasi_http_loads_and_each_request_is_denied_by_wasi(
        httpdeny: ComponentRuntime) -> None:
    # A real component (componentize-qjs) sending through wasi:http/outgoing-handler: the
    # host answers WASI's own error-code, every time, and the instance keeps serving.
    imports = httpdeny.module.describe()["imports"]
    assert {k: v for k, v in imports.items() if k.startswith("wasi:http/")} == {
        "wasi:http/types@0.2.9": ["imported, not granted"],
        "wasi:http/outgoing-handler@0.2.9": ["imported, not granted"]}
    assert call(httpdeny, "answer") == 42
    discarded = httpdeny.instances_discarded
    for _ in range(3):  # the request resource is dropped each time, not piled up
        assert call(httpdeny, "send") == 'denied: {"tag":"HTTP-request-denied"}'
    assert httpdeny.instances_discarded == discarded


def test_core_modules_still_load_as_abi_1(engine: SandboxEngine) -> None:
    from tests.host_fixtures import echo_wasm

    assert PluginModule.load(engine, echo_wasm()).abi == 1


def test_a_truncated_component_is_invalid(engine: SandboxEngine) -> None:
    wasm = js_component("types").read_bytes()[:5000]
    with pytest.raises(InvalidModule, match="not a valid WebAssembly component"):
        PluginModule.load(engine, wasm, "cut")


def test_wasi_output_goes_to_the_plugin_log_and_clocks_and_random_are_given(
        engine: SandboxEngine) -> None:
    with _runtime(engine, js_component("wasi")) as rt:
        assert call(rt, "shout", "hello") == 5
        lines = [(ln.level, ln.message) for ln in rt.log.lines()]
        assert ("info", "out: hello") in lines  # stdout
        assert ("warn", "err: hello") in lines  # stderr
        assert abs(call(rt, "now") - time.time()) < 60
        assert call(rt, "dice") != call(rt, "dice")
        assert call(rt, "preopened") == 0  # no directory: the filesystem reaches nothing
        assert call(rt, "environment") == []  # the host's variables (tokens...) stay its own


def test_more_memories_than_allowed_are_refused_at_load(engine: SandboxEngine) -> None:
    module = PluginModule.load(engine, wat_component("memories"))
    with pytest.raises(PluginLoadError, match="memory count too high"):
        ComponentRuntime(engine, module)  # type: ignore[arg-type]


def test_a_component_without_functions_is_not_a_plugin(engine: SandboxEngine) -> None:
    with pytest.raises(InvalidModule, match="exports no function"):
        PluginModule.load(engine, b"\x00asm\x0d\x00\x01\x00", "empty")


def test_a_start_function_that_never_returns_ends_at_the_deadline(
        engine: SandboxEngine) -> None:
    module = PluginModule.load(engine, wat_component("start-loop"))

    def start() -> None:
        with pytest.raises(PluginLoadError, match="exceeded its deadline of 200 ms"):
            ComponentRuntime(engine, module, Limits(timeout_ms=200))  # type: ignore[arg-type]

    assert fastest(start) < 0.2 + 1.5


def test_fuel_ends_a_spinning_call_when_the_engine_meters_it() -> None:
    with SandboxEngine(fuel=True) as metered:
        with _runtime(metered, wat_component("limits"), fuel=1_000_000) as rt:
            assert call(rt, "small", 1) == 2
            with pytest.raises(FuelExhausted, match="used all of its fuel"):
                rt.call("spin", b"[]")
            assert call(rt, "small", 2) == 3  # refilled for the next call


def test_a_type_json_cannot_carry_is_refused_clearly(engine: SandboxEngine,
                                                    limits_rt: ComponentRuntime) -> None:
    exports = {e["name"]: e for e in limits_rt.module.describe()["exports"]}
    assert "option<option" in exports["nested"]["unsupported"]
    with pytest.raises(InvalidInput, match="cannot be called with JSON: its signature uses "
                                           "option<option"):
        limits_rt.call("nested", b"[null]")
    assert call(limits_rt, "small", 1) == 2


def test_calls_from_many_threads_share_the_pool(types: ComponentRuntime) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: call(types, "greet", str(i)), range(64)))
    assert answers == [f"Hello, {i}!" for i in range(64)]
    assert types.stats()["live"] <= types.limits.pool_size


def test_floats_and_their_non_finite_values(types: ComponentRuntime,
                                            limits_rt: ComponentRuntime) -> None:
    assert call(types, "half", 2**60) == 2.0**59
    assert call(types, "half", "inf") == "inf"
    assert call(types, "half", "-inf") == "-inf"
    assert call(types, "half", "nan") == "nan"
    assert call(limits_rt, "twice32", 1.25) == 2.5
    assert call(limits_rt, "twice32", 3e38) == "inf"  # f32 overflow in the guest
    with pytest.raises(InvalidInput, match=r"argument x: expected an f32 in range"):
        limits_rt.call("twice32", b"[1e39]")


def test_engine_interrupt_ends_a_running_component_call(engine: SandboxEngine) -> None:
    import threading

    with _runtime(engine, wat_component("limits"), timeout_ms=60_000) as rt:
        caught: list[BaseException] = []

        def spin() -> None:
            try:
                rt.call("spin", b"[]")
            except BaseException as exc:
                caught.append(exc)

        thread = threading.Thread(target=spin)
        thread.start()
        time.sleep(0.3)  # let it enter the loop
        engine.interrupt()  # a stop whose grace is over
        thread.join(10)
        assert not thread.is_alive()
        assert len(caught) == 1 and isinstance(caught[0], DeadlineExceeded)
        assert call(rt, "small", 1) == 2


def test_a_guest_flooding_stdout_neither_blocks_nor_floods_the_log(
        engine: SandboxEngine) -> None:
    # 8 MiB through a 64 KiB pipe: the reader keeps it moving, the log's budget drops the rest.
    with _runtime(engine, js_component("wasi"), timeout_ms=10_000,
                  max_log_bytes_per_s=64 * 1024) as rt:
        start = time.monotonic()
        assert call(rt, "flood", 8192) == 8192
        assert time.monotonic() - start < 10
        kept = [ln for ln in rt.log.lines() if ln.message.startswith("xxx")]
        assert 0 < len(kept) < 1000
        assert call(rt, "shout", "after") == 5


@pytest.mark.parametrize("export", ["near", "far", "guard"])
def test_an_access_past_the_end_of_memory_traps(engine: SandboxEngine, export: str) -> None:
    # The memories are the host's (component/memory.py): an access past their size, or into
    # the guard region past the reservation, must be a trap, never a fault in the process.
    with _runtime(engine, wat_component("oob"), max_memory_bytes=8 * 2**20) as rt:
        with pytest.raises(Trap, match="out of bounds memory access"):
            rt.call(export, b"[]")
        assert call(rt, "ok") == 1


def test_the_hosts_memories_are_freed_with_their_instances(engine: SandboxEngine) -> None:
    from omnicore.sandbox.component import memory

    before = memory.live()
    with _runtime(engine, wat_component("limits"), max_memory_bytes=8 * 2**20) as rt:
        for _ in range(5):  # each bomb discards an instance, and its memory with it
            with pytest.raises(MemoryLimitExceeded):
                rt.call("bomb", b"[]")
            assert call(rt, "small", 1) == 2
            assert memory.live() == before + 1
    assert memory.live() == before
