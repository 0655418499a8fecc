"""PluginModule: loading, manifest rules, handler discovery, inspect."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime

from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import InvalidModule, UnsupportedAbiVersion
from omnicore.sandbox import PluginModule, SandboxEngine, wasmbin

Wat = Callable[[str], bytes]

PLAIN = """
(module
  (memory (export "memory") 1)
  (func (export "omni_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "omni_free") (param i32 i32))
  (func (export "alpha") (param i32 i32) (result i64) (i64.const 0))
  (func (export "beta") (param i32 i32) (result i64) (i64.const 0))
  (func (export "_hidden") (param i32 i32) (result i64) (i64.const 0))
  (func (export "omni_other") (param i32 i32) (result i64) (i64.const 0))
  (func (export "not_a_handler") (param i32) (result i64) (i64.const 0))
)
"""


def with_manifest(manifest: object) -> bytes:
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    return wasmbin.set_custom_section(wasmtime.wat2wasm(PLAIN), "omnicore.manifest", raw)


def test_echo_attributes(engine: SandboxEngine, wat: Wat) -> None:
    wasm = wat("echo")
    m = PluginModule.load(engine, wasm)
    assert m.name == "echo" and m.abi == 1 and m.size == len(wasm)
    assert m.handlers == ("echo", "log", "debug_enabled", "fail")
    assert m.requested == frozenset({"log"})
    assert m.manifest["version"] == "0.1.0"
    assert len(m.sha256) == 64 and not m.uses_wasi
    assert m.imports_by_capability() == {"omnicore:log": ["write", "enabled"]}


def test_handlers_from_exports_without_manifest(engine: SandboxEngine) -> None:
    m = PluginModule.load(engine, wasmtime.wat2wasm(PLAIN), "plain")
    assert m.handlers == ("alpha", "beta")  # reserved names and other types are not handlers
    assert m.manifest == {} and m.requested == frozenset()


def test_manifest_handlers_restrict(engine: SandboxEngine) -> None:
    m = PluginModule.load(engine, with_manifest({"handlers": ["beta", {"name": "alpha"}]}))
    assert m.handlers == ("beta", "alpha")


def test_name_precedence(engine: SandboxEngine, tmp_path: Path) -> None:
    wasm = with_manifest({"name": "from-manifest"})
    assert PluginModule.load(engine, wasm).name == "from-manifest"
    assert PluginModule.load(engine, wasm, "explicit").name == "explicit"
    f = tmp_path / "from-file.wasm"
    f.write_bytes(wasmtime.wat2wasm(PLAIN))
    loaded = PluginModule.load(engine, f)
    assert loaded.name == "from-file" and loaded.path == f
    anon = PluginModule.load(engine, wasmtime.wat2wasm(PLAIN))
    assert anon.name.startswith("plugin-")


@pytest.mark.parametrize(("manifest", "match"), [
    ({"handlers": ["missing"]}, "handler 'missing' is listed in the manifest but not exported"),
    ({"handlers": ["not_a_handler"]}, r"has type \(i32\) -> i64"),
    ({"handlers": ["_hidden"]}, "reserved name"),
    # The load checks the manifest section first (its rules: tests/sandbox/test_manifest.py).
    ({"name": 5}, "'name' must be a string"),
])
def test_manifest_handlers_must_be_exported_handlers(engine: SandboxEngine, manifest: object,
                                                    match: str) -> None:
    with pytest.raises(InvalidModule, match=match):
        PluginModule.load(engine, with_manifest(manifest), "m")


@pytest.mark.parametrize("abi", [0, 2, "1", True, None, 1.5])
def test_abi_values(engine: SandboxEngine, abi: object) -> None:
    with pytest.raises(UnsupportedAbiVersion, match="this host supports ABI 1"):
        PluginModule.load(engine, with_manifest({"abi": abi}), "m")


def test_abi_1_explicit_is_fine(engine: SandboxEngine) -> None:
    assert PluginModule.load(engine, with_manifest({"abi": 1}), "m").abi == 1


def test_unreadable_path(engine: SandboxEngine, tmp_path: Path) -> None:
    with pytest.raises(InvalidModule, match="cannot read plugin file"):
        PluginModule.load(engine, tmp_path / "missing.wasm")


def test_wrong_source_type(engine: SandboxEngine) -> None:
    with pytest.raises(TypeError):
        PluginModule.load(engine, 42)  # type: ignore[arg-type]


def test_inspect_reports_without_raising(wat: Wat) -> None:
    report = PluginModule.inspect(wat("echo"), builtin_registry())
    assert report["ok"] is True and report["name"] == "echo"
    assert report["handlers"] == ["echo", "log", "debug_enabled", "fail"]
    assert report["imports"] == {"omnicore:log": ["write", "enabled"]}
    assert {"name": "echo", "kind": "func", "type": "(i32, i32) -> i64"} in report["exports"]
    bad = PluginModule.inspect(b"garbage")
    assert bad["ok"] is False and bad["error_type"] == "InvalidModule"
    unknown = PluginModule.inspect(wat("unknown_namespace"), builtin_registry())
    assert unknown["ok"] is False and "frobnicate" in unknown["error"]
    assert unknown["handlers"] == ["ok"]  # still a full report for the operator
    assert PluginModule.inspect(wat("abi2"))["error_type"] == "UnsupportedAbiVersion"


@pytest.mark.parametrize("valtype", ["v128", "anyref", "(ref func)", "exnref", "i31ref",
                                     "(ref null $t)"])
def test_proposal_types_are_refused_not_fatal(engine: SandboxEngine, valtype: str) -> None:
    # wasmtime's C API aborts the process when asked about these types in a signature: with
    # GC on (Kotlin/Wasm), the engine refuses them in an import or export from the bytes
    # (v128 with its own message), before wasmtime is asked (tests/sandbox/test_gc.py).
    wasm = wasmtime.wat2wasm(f"""(module (type $t (func))
      (import "omnicore:log" "write" (func (param {valtype})))
      (memory (export "memory") 1)
      (func (export "omni_alloc") (param i32) (result i32) (i32.const 8))
      (func (export "omni_free") (param i32 i32))
      (func (export "h") (param {valtype}) (result i32) (i32.const 0)))""")
    with pytest.raises(InvalidModule, match=r"not a valid WebAssembly module: .*(v128 type|"
                       r"import omnicore:log.write has a v128 or a GC/typed reference)"):
        PluginModule.load(engine, wasm, "p")


@pytest.mark.parametrize("memories", [
    '(memory (export "memory") 1 1 shared)',
    '(memory (export "memory") i64 1)',
    '(memory (export "memory") 1) (memory 1)',
])
def test_memory_proposals_are_refused(engine: SandboxEngine, memories: str) -> None:
    wasm = wasmtime.wat2wasm(f"""(module {memories}
      (func (export "omni_alloc") (param i32) (result i32) (i32.const 8))
      (func (export "omni_free") (param i32 i32)))""")
    with pytest.raises(InvalidModule, match="not a valid WebAssembly module"):
        PluginModule.load(engine, wasm, "p")


# -- described from the bytes, never compiled (issue 63) --------------------------------------

#: Imports and exports of every kind, an Extism-shaped module, a WASI one.
SHAPES = [
    PLAIN,
    """(module
      (import "omnicore:kv" "get" (func (param i32 i32) (result i64)))
      (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
      (import "omnicore:log" "write" (func (param i32 i32 i32)))
      (memory (export "memory") 1 4)
      (table (export "t") 2 funcref)
      (global (export "g") (mut i64) (i64.const 7))
      (global (export "f") f32 (f32.const 1))
      (func (export "omni_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "omni_free") (param i32 i32))
      (func (export "h") (param i32 i32) (result i64) (i64.const 0)))""",
    """(module
      (import "extism:host/env" "input_length" (func (result i64)))
      (memory (export "memory") 1)
      (func (export "count") (result i32) (i32.const 0)))""",
    """(module
      (import "env" "memory" (memory 1))
      (func (export "run") (result i32) (i32.const 0)))""",
]


@pytest.mark.parametrize("text", SHAPES, ids=["plain", "every-kind", "extism", "memory-import"])
def test_a_described_module_reads_as_the_compiled_one_and_compiles_nothing(
        tmp_path: Path, wat: Wat, text: str) -> None:
    path = tmp_path / "p.wasm"
    path.write_bytes(wasmtime.wat2wasm(text))
    cache = tmp_path / "cache"
    with SandboxEngine(cache_dir=cache) as eng:
        described = PluginModule.inspect(path, builtin_registry(), engine=eng, compile=False)
        unchecked = PluginModule.inspect(path, builtin_registry(), engine=eng, compile=False,
                                         validate=False)
        assert not list(cache.glob("*.cwasm"))  # nothing compiled, nothing stored
        compiled = PluginModule.inspect(path, builtin_registry(), engine=eng)
    assert described == unchecked == compiled
    assert list(cache.glob("*.cwasm"))  # the compiled one was


def test_a_described_module_is_refused_as_the_compiled_one(tmp_path: Path) -> None:
    bad = bytes(wasmtime.wat2wasm(PLAIN))[:-3]  # truncated
    with SandboxEngine() as eng:
        described = PluginModule.inspect(bad, engine=eng, compile=False)
        compiled = PluginModule.inspect(bad, engine=eng)
        # A body wasmtime refuses: its validation says so, without compiling.
        typo = bytes(wasmtime.wat2wasm(PLAIN.replace('"beta") (param i32 i32) (result i64) '
                                               '(i64.const 0)',
                                               '"beta") (param i32 i32) (result i64) '
                                               '(i32.const 0)')))
        wrong = PluginModule.inspect(typo, engine=eng, compile=False)
        assert wrong["ok"] is False and "type mismatch" in wrong["error"]
        assert "type mismatch" in PluginModule.inspect(typo, engine=eng)["error"]
    assert described["ok"] is compiled["ok"] is False
    assert described["error_type"] == compiled["error_type"] == "InvalidModule"
