"""specs/abi.md rule by rule, against the host: the rules no other test holds on its own.

Each test names its section. Elsewhere: required exports and import checks
(test_abi_fixtures.py), handlers and manifests (test_module.py), limits (test_limits.py),
results that break the ABI (test_call_errors.py, test_hostile.py), WASI (test_wasi.py),
the capabilities' own rules (tests/capabilities/).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable

import pytest
import wasmtime

from omnicore.capabilities.builtin import builtin_capabilities
from omnicore.errors import (
    GuestError,
    InvalidModule,
    NeedsGrant,
    PluginLoadError,
    Trap,
    UnsupportedAbiVersion,
)
from omnicore.sandbox import (
    Capability,
    CapabilityRegistry,
    GuestMemory,
    HostFunction,
    Limits,
    PluginModule,
    PluginRuntime,
    SandboxEngine,
    wasmbin,
)

Make = Callable[..., PluginRuntime]

_PAIR = """
  (global $heap (mut i32) (i32.const 65536))
  (func (export "omni_alloc") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p)
                               (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  (func (export "ok") (param i32 i32) (result i64) (i64.const 0))
"""


def plugin(body: str, imports: str = "", pair: str = _PAIR, pages: int = 4) -> bytes:
    return wasmtime.wat2wasm(f'(module {imports} (memory (export "memory") {pages}) {pair} '
                             f"{body})")


def with_manifest(wasm: bytes, manifest: object) -> bytes:
    return wasmbin.set_custom_section(wasm, "omnicore.manifest", json.dumps(manifest).encode())


# ---- §1.1 required exports --------------------------------------------------------------

def test_1_1_omni_alloc_0_may_return_any_non_zero_pointer(engine: SandboxEngine) -> None:
    # A re-entrant block of 0 bytes (§3.3) from an allocator that answers 0 bytes with a
    # pointer past the end of memory: nothing is written there, the result is empty.
    def empty(_state: object, mem: GuestMemory) -> int:
        return mem.alloc_result(b"")

    empty_cap = Capability("empty", (HostFunction("get", (), ("i64",), empty),))
    registry = CapabilityRegistry([*builtin_capabilities(), empty_cap])
    pair = _PAIR.replace("(local.get $p))", """(if (result i32) (local.get $n)
                                                  (then (local.get $p))
                                                  (else (i32.const -16))))""", 1)
    wasm = plugin("""(func (export "h") (param i32 i32) (result i64)
                       (i64.store (i32.const 64) (call $get))
                       (i64.const 0x0000004000000008))""",
                  imports='(import "omnicore:empty" "get" (func $get (result i64)))', pair=pair)
    mod = PluginModule.load(engine, wasm, "zero")
    with PluginRuntime(engine, mod, registry, ["empty"]) as rt:
        packed, = struct.unpack("<Q", rt.call("h", b""))
        assert (packed >> 32, packed & 0xFFFF_FFFF) == (0xFFFF_FFF0, 0)


# ---- §1.2/§1.3 handlers ---------------------------------------------------------------------

def test_1_2_reserved_names_and_other_exports_are_never_handlers(make: Make) -> None:
    rt = make(plugin("""(func (export "omni_extra") (param i32 i32) (result i64) (i64.const 0))
                        (func (export "_private") (param i32 i32) (result i64) (i64.const 0))
                        (func (export "other_type") (param i32) (result i32) (i32.const 0))
                        (global (export "g") i32 (i32.const 0))"""))
    assert rt.handlers == ("ok",)


@pytest.mark.parametrize(("handlers", "match"), [
    (["missing"], "handler 'missing' is listed in the manifest but not exported"),
    (["other_type"], r"handler 'other_type' has type \(i32\) -> i32"),
    (["omni_extra"], "reserved name"),
])
def test_1_3_manifest_handlers_must_be_exported_with_the_handler_type(
        engine: SandboxEngine, handlers: list[str], match: str) -> None:
    wasm = plugin("""(func (export "omni_extra") (param i32 i32) (result i64) (i64.const 0))
                     (func (export "other_type") (param i32) (result i32) (i32.const 0))""")
    with pytest.raises(InvalidModule, match=match):
        PluginModule.load(engine, with_manifest(wasm, {"handlers": handlers}), "h")


# ---- §1.4 ABI version --------------------------------------------------------------------

@pytest.mark.parametrize("abi", [True, "1", 1.5, 0, None])
def test_1_4_only_the_integer_1_is_abi_1(engine: SandboxEngine, abi: object) -> None:
    with pytest.raises(UnsupportedAbiVersion, match="targets omnicore ABI"):
        PluginModule.load(engine, with_manifest(plugin(""), {"abi": abi}), "v")


# ---- §1.5 a plugin that cannot start ---------------------------------------------------------

@pytest.mark.parametrize(("answer", "match"), [("(i32.const 0)", "omni_alloc"),
                                               ("(unreachable)", "omni_alloc")])
def test_1_5_omni_alloc_failing_at_start_is_a_load_error_naming_it(
        make: Make, answer: str, match: str) -> None:
    pair = f"""(func (export "omni_alloc") (param i32) (result i32) {answer})
               (func (export "omni_free") (param i32 i32))
               (func (export "ok") (param i32 i32) (result i64) (i64.const 0))"""
    with pytest.raises(PluginLoadError, match=match):
        make(plugin("", pair=pair))


# ---- §2.1 the input buffer, §2.3 the output is the guest's ----------------------------------

# The allocator writes what the host asks of it as (op, a, b) u32 triples from 1024: op 1 is
# omni_alloc(n) -> p, op 2 omni_free(p, n), op 3 a handler call (ptr, len). The handler
# returns the record itself.
RECORDING = """
  (global $heap (mut i32) (i32.const 65536))
  (global $rec (mut i32) (i32.const 1024))
  (func $note (param i32 i32 i32)
    (i32.store (global.get $rec) (local.get 0))
    (i32.store (i32.add (global.get $rec) (i32.const 4)) (local.get 1))
    (i32.store (i32.add (global.get $rec) (i32.const 8)) (local.get 2))
    (global.set $rec (i32.add (global.get $rec) (i32.const 12))))
  (func (export "omni_alloc") (param $n i32) (result i32) (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (local.get $n)))
    (call $note (i32.const 1) (local.get $n) (local.get $p))
    (local.get $p))
  (func (export "omni_free") (param $p i32) (param $n i32)
    (call $note (i32.const 2) (local.get $p) (local.get $n)))
  (func (export "record") (param $p i32) (param $n i32) (result i64)
    (call $note (i32.const 3) (local.get $p) (local.get $n))
    (i64.or (i64.const 0x0000040000000000)
            (i64.extend_i32_u (i32.sub (global.get $rec) (i32.const 1024)))))
"""


def triples(out: bytes) -> list[tuple[int, ...]]:
    return [struct.unpack_from("<III", out, i) for i in range(0, len(out), 12)]


def test_2_1_one_input_buffer_grown_by_free_then_alloc_and_never_the_output(
        make: Make) -> None:
    rt = make(plugin("", pair=RECORDING, pages=5))
    assert triples(rt.call("record", b"abc")) == [(1, 65536, 65536), (3, 65536, 3)]
    # More than the buffer holds: free(buf, cap), then alloc(the next power of two).
    assert triples(rt.call("record", b"x" * 100_000))[2:] == [
        (2, 65536, 65536), (1, 131072, 131072), (3, 131072, 100_000)]
    # Then one guest call per plugin call: no allocation, and the host never frees the
    # output block (abi.md §2.3).
    out = rt.call("record", b"")
    assert triples(out)[5:] == [(3, 131072, 0)]
    assert not any(op == 2 and p == 1024 for op, p, _ in triples(out))


def test_1_2_initialize_runs_once_before_anything_else(make: Make) -> None:
    init = '(func (export "_initialize") (call $note (i32.const 9) (i32.const 0) (i32.const 0)))'
    rt = make(plugin(init, pair=RECORDING))
    assert triples(rt.call("record", b"a"))[:2] == [(9, 0, 0), (1, 65536, 65536)]
    assert [t[0] for t in triples(rt.call("record", b"b"))].count(9) == 1


# ---- §3.2 the caller's buffer --------------------------------------------------------------

def test_3_2_a_short_buffer_gets_nothing_and_the_full_length(make: Make) -> None:
    # config.get("k") into a buffer of 4 bytes filled with "####", then of 64.
    rt = make(plugin("""(data (i32.const 16) "k")
                        (func (export "get") (param $p i32) (param $n i32) (result i64)
                          (i32.store (i32.const 100) (i32.const 0x23232323))
                          (i32.store (i32.const 96)
                            (call $get (i32.const 16) (i32.const 1) (i32.const 100)
                                       (i32.load (local.get $p))))
                          (i64.const 0x0000006000000010))""",
                     imports='(import "omnicore:config" "get" '
                             '(func $get (param i32 i32 i32 i32) (result i32)))'),
              grants=["config"], config={"k": "a long value"})
    short = rt.call("get", struct.pack("<I", 4))
    assert struct.unpack_from("<i", short)[0] == 12 and short[4:8] == b"####"
    full = rt.call("get", struct.pack("<I", 64))
    assert struct.unpack_from("<i", full)[0] == 12 and full[4:16] == b"a long value"


# ---- §2.2 the result -------------------------------------------------------------------------

def test_2_2_an_error_message_is_not_output_it_is_cut_at_4_kib(make: Make) -> None:
    # E = 1 with 100 KiB: max_output_bytes is about output, so this is a GuestError, cut.
    rt = make(plugin("""(func (export "fail") (param i32 i32) (result i64)
                          (memory.fill (i32.const 65536) (i32.const 101) (i32.const 102400))
                          (i64.const 0x0001000080019000))"""),
              limits=Limits(max_output_bytes=1024))
    with pytest.raises(GuestError) as info:
        rt.call("fail", b"")
    assert info.value.guest_message == "e" * 4096


def test_2_2_an_empty_error_message_ignores_its_pointer(make: Make) -> None:
    rt = make(plugin("""(func (export "fail") (param i32 i32) (result i64)
                          (i64.const 0xFFFFFFF080000000))"""))
    with pytest.raises(GuestError) as info:
        rt.call("fail", b"")
    assert info.value.guest_message == ""
    assert rt.call("ok", b"") == b""


# ---- §2.5 a guest that logs why it traps --------------------------------------------------

def test_2_5_warn_and_error_lines_of_the_failed_call_join_the_trap(make: Make) -> None:
    rt = make(plugin("""(data (i32.const 16) "panicked at src/lib.rs:3: boom")
                        (data (i32.const 64) "just info")
                        (func (export "abort") (param i32 i32) (result i64)
                          (call $write (i32.const 2) (i32.const 64) (i32.const 9))
                          (call $write (i32.const 4) (i32.const 16) (i32.const 30))
                          (unreachable))""",
                     imports='(import "omnicore:log" "write" '
                             '(func $write (param i32 i32 i32)))'))
    with pytest.raises(Trap) as info:
        rt.call("abort", b"")
    assert "the plugin logged: panicked at src/lib.rs:3: boom" in str(info.value)
    assert "just info" not in str(info.value)


# ---- §5 the manifest -------------------------------------------------------------------------

def test_5_unknown_fields_are_ignored_and_handler_objects_accepted(engine: SandboxEngine) -> None:
    wasm = with_manifest(plugin(""), {"abi": 1, "name": "fwd", "from_the_future": {"x": [1]},
                                      "handlers": [{"name": "ok", "description": "fine"}]})
    mod = PluginModule.load(engine, wasm)
    assert (mod.name, mod.handlers) == ("fwd", ("ok",))


def test_5_the_manifest_never_grants_anything(make: Make) -> None:
    wasm = with_manifest(
        plugin("", imports='(import "omnicore:config" "get" '
                           '(func (param i32 i32 i32 i32) (result i32)))'),
        {"grants": ["config"], "grant": {"config": {}}, "permissions": ["config"]})
    with pytest.raises(NeedsGrant, match="omnicore:config"):
        make(wasm)


# ---- §6 minimal WASI --------------------------------------------------------------------------

def test_6_no_args_and_no_environment(make: Make) -> None:
    rt = make(plugin("""(func (export "sizes") (param i32 i32) (result i64)
                          (i32.store (i32.const 96) (i32.const 7))
                          (i32.store (i32.const 100) (i32.const 7))
                          (i32.store (i32.const 104) (i32.const 7))
                          (i32.store (i32.const 108) (i32.const 7))
                          (drop (call $args (i32.const 96) (i32.const 100)))
                          (drop (call $environ (i32.const 104) (i32.const 108)))
                          (i64.const 0x0000006000000010))""",
                     imports='(import "wasi_snapshot_preview1" "args_sizes_get" '
                             '(func $args (param i32 i32) (result i32)))'
                             '(import "wasi_snapshot_preview1" "environ_sizes_get" '
                             '(func $environ (param i32 i32) (result i32)))'))
    assert struct.unpack("<4I", rt.call("sizes", b"")) == (0, 0, 0, 0)
