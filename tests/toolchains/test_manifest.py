"""``omnicore.toml`` -> the ``omnicore.manifest`` section every SDK build writes: handler
descriptions and input schemas (``[plugin.handler.NAME]``) reach the MCP tool list."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
import wasmtime

from omnicore.errors import BuildError
from omnicore.mcp.tools import Exposure, tools_of
from omnicore.plugins.host import PluginHost
from omnicore.sandbox._wasmtime import use_winch
from omnicore.toolchains.manifest import embed_manifest, handler_exports, read_plugin_meta

#: The example plugins `scripts/dev setup` built (a read of it marks a test `toolchain`).
BUILT = Path(__file__).resolve().parents[2] / "build" / "plugins"

WAT = """(module (memory (export "memory") 2)
  (func (export "omni_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "omni_free") (param i32 i32))
  (func (export "greet") (param i32 i32) (result i64) (i64.const 0))
  (func (export "other") (param i32 i32) (result i64) (i64.const 0)))"""

TOML = """
[plugin]
name = "greeter"
description = "Greets people"
[plugin.handler.greet]
description = "Greet someone by name"
input_schema = {type = "object", properties = {name = {type = "string"}}}
"""


def test_handler_tables_become_tool_descriptions_and_schemas(tmp_path: Path) -> None:
    (tmp_path / "omnicore.toml").write_text(TOML)
    meta = read_plugin_meta(tmp_path)
    wasm = embed_manifest(wasmtime.wat2wasm(WAT), meta, language="rust", default_name="x")
    with PluginHost() as host:
        info = host.load(wasm)
        assert info.manifest["handlers"] == [
            {"name": "greet", "description": "Greet someone by name",
             "input_schema": {"type": "object", "properties": {"name": {"type": "string"}}}},
            "other"]
        tools = tools_of(host, Exposure(["greeter/*"]))
    assert tools["greeter.greet"].description == "Greet someone by name"
    assert tools["greeter.greet"].input_schema["properties"] == {"name": {"type": "string"}}
    assert tools["greeter.other"].description == "Greets people"


@pytest.mark.parametrize("table", [
    '[plugin.handler.nope]\ndescription = "x"',
    '[plugin.handler.greet]\ndescrption = "typo"',
    '[plugin.handler.greet]\ninput_schema = {type = "string"}',
    '[plugin.handler.greet]\ndescription = 5',
])
def test_a_wrong_handler_table_fails_the_build(tmp_path: Path, table: str) -> None:
    meta = tomllib.loads(f'[plugin]\nname = "greeter"\n{table}\n')["plugin"]
    with pytest.raises(BuildError, match=r"\[plugin\.handler\."):
        embed_manifest(wasmtime.wat2wasm(WAT), meta, language="rust", default_name="x")


@pytest.mark.parametrize(("entries", "said"), [
    ('[[plugin.schedules]]\nhandler = "greet"\nevery = "5 seconds"', r"schedules\[0\]"),
    ('[[plugin.schedules]]\nhandler = "nope"\nevery = "5s"', r"no handler 'nope'"),
    ('[[plugin.schedules]]\nhandler = "greet"\ncron = "61 * * * *"', "cron"),
    ('[[plugin.subscriptions]]\ntopic = "plugin.*.order"\nhandler = "on_order"',
     r"subscriptions\[0\]: no handler 'on_order'"),
    ('[[plugin.subscriptions]]\ntopic = "plugin.*.order"', r"subscriptions\[0\]"),
    ('[[plugin.subscriptions]]\ntopic = "t"\nhandler = "greet"\ndurabel = true',
     "unknown key"),
])
def test_a_schedule_or_subscription_that_could_not_load_fails_the_build(
        entries: str, said: str) -> None:
    # The same checks as every load: caught when the author builds, not when an operator
    # loads the plugin.
    meta = tomllib.loads(f'[plugin]\nname = "greeter"\n{entries}\n')["plugin"]
    with pytest.raises(BuildError, match=said):
        embed_manifest(wasmtime.wat2wasm(WAT), meta, language="rust", default_name="x")


def test_good_schedules_and_subscriptions_build_and_load(tmp_path: Path) -> None:
    meta = tomllib.loads('[plugin]\nname = "greeter"\n[[plugin.schedules]]\nhandler = "greet"\n'
                         'every = "5s"\n[[plugin.subscriptions]]\ntopic = "plugin.*.x"\n'
                         'handler = "other"\n')["plugin"]
    wasm = embed_manifest(wasmtime.wat2wasm(WAT), meta, language="rust", default_name="x")
    with PluginHost() as host:
        info = host.load(wasm)
    assert info.manifest["schedules"] == [{"handler": "greet", "every": "5s"}]
    assert info.manifest["subscriptions"] == [{"topic": "plugin.*.x", "handler": "other"}]


def _describing(all_json: str, greet_json: str, extra: str = "") -> bytes:
    """A module whose omni_describe exports answer the given JSON (specs/abi.md §5.1)."""
    def data(offset: int, text: str) -> str:
        return f'(data (i32.const {offset}) "{text.replace(chr(34), chr(92) + chr(34))}")'

    def packed(offset: int, text: str) -> str:
        return f"(i64.or (i64.shl (i64.const {offset}) (i64.const 32)) (i64.const {len(text)}))"

    return wasmtime.wat2wasm(f"""(module
      (import "omnicore:kv" "get" (func $get (param i32 i32 i32 i32) (result i32)))
      (memory (export "memory") 2)
      (func (export "omni_alloc") (param i32) (result i32) (i32.const 1024))
      (func (export "omni_free") (param i32 i32))
      {data(2048, all_json)} {data(4096, greet_json)}
      (func (export "greet") (param i32 i32) (result i64) (i64.const 0))
      (func (export "other") (param i32 i32) (result i64) (i64.const 0))
      (func (export "omni_describe") (param i32 i32) (result i64) {packed(2048, all_json)})
      (func (export "omni_describe_greet") (param i32 i32) (result i64)
        {packed(4096, greet_json)})
      {extra})""")


def test_the_code_describes_handlers_and_omnicore_toml_wins_key_by_key() -> None:
    wasm = _describing(
        '{"handlers":{"other":{"description":"From the code","output_schema":'
        '{"type":"object","properties":{"n":{"type":"integer"}}}}}}',
        '{"description":"Greets","input_schema":{"type":"object","required":["name"],'
        '"properties":{"name":{"type":"string"}}}}')
    meta = tomllib.loads('[plugin]\nname = "greeter"\n[plugin.handler.greet]\n'
                        'description = "Greet someone by name"\ndestructive = true\n'
                        'long_running = true\n')["plugin"]
    with PluginHost() as host:
        info = host.load(embed_manifest(wasm, meta, language="go", default_name="x"))
    greet, other = info.manifest["handlers"]
    assert greet == {"name": "greet", "description": "Greet someone by name", "destructive": True,
                     "long_running": True, "input_schema": {"type": "object", "required": ["name"],
                                      "properties": {"name": {"type": "string"}}}}
    assert other["description"] == "From the code"
    assert other["output_schema"]["properties"] == {"n": {"type": "integer"}}
    assert list(info.handlers) == ["greet", "other"]  # the describe exports are no handlers


@pytest.mark.parametrize(("wasm", "said"), [
    (_describing('{"handlers":{"greet":{"input_schema":{"type":"array"}}}}', "{}"),
     "handler 'greet' from its code input_schema must be"),
    (_describing("{}", '{"colour":"red"}'), "unknown keys"),
    (_describing("{}", '{"long_running":"yes"}'), 'long_running must be true, false or "required"'),
    (_describing("not json", "{}"), "describing the handlers failed"),
])
def test_a_wrong_description_from_code_fails_the_build(wasm: bytes, said: str) -> None:
    with pytest.raises(BuildError, match=said):
        embed_manifest(wasm, {"name": "greeter"}, language="go", default_name="x")


def test_a_describe_export_that_never_ends_fails_the_build() -> None:
    wat = """(module (memory (export "memory") 1)
      (func (export "greet") (param i32 i32) (result i64) (i64.const 0))
      (func (export "omni_describe") (param i32 i32) (result i64) (loop (br 0)) (i64.const 0)))"""
    with pytest.raises(BuildError, match="describing the handlers failed"):
        embed_manifest(wasmtime.wat2wasm(wat), {}, language="go", default_name="x")


#: Exports of every shape the handler scan meets: a handler, an imported function exported
#: again, reserved names, near-miss signatures, a memory, a global and a table among them.
SHAPES = """(module
  (import "env" "ext" (func $ext (param i32 i32) (result i64)))
  (import "env" "g" (global i32))
  (type $h (func (param i32 i32) (result i64)))
  (memory (export "memory") 1)
  (table (export "table") 1 funcref)
  (global (export "gl") i32 (i32.const 0))
  (func $a (export "a") (type $h) (i64.const 0))
  (export "a_again" (func $a))
  (export "reexported" (func $ext))
  (func (export "_start_like") (param i32 i32) (result i64) (i64.const 0))
  (func (export "omni_describe") (param i32 i32) (result i64) (i64.const 0))
  (func (export "i32_result") (param i32 i32) (result i32) (i32.const 0))
  (func (export "three_params") (param i32 i32 i32) (result i64) (i64.const 0))
  (func (export "i64_params") (param i64 i64) (result i64) (i64.const 0))
  (func (export "two_results") (param i32 i32) (result i64 i64) (i64.const 0) (i64.const 0))
  (func (export "z_last") (param i32 i32) (result i64) (i64.const 0)))"""


def _handlers_as_wasmtime_reads_them(wasm: bytes) -> list[str]:
    """The reference: the export types wasmtime gives once it has compiled the module (by
    Winch, the quicker compiler: the types are the module's, whoever compiles it)."""
    config = wasmtime.Config()
    use_winch(config)
    module = wasmtime.Module(wasmtime.Engine(config), wasm)
    return [e.name for e in module.exports if isinstance(e.type, wasmtime.FuncType)
            and not e.name.startswith(("omni_", "_"))
            and [str(p) for p in e.type.params] == ["i32", "i32"]
            and [str(r) for r in e.type.results] == ["i64"]]


@pytest.mark.parametrize("source", [SHAPES, WAT])
def test_handlers_are_read_from_the_bytes_as_wasmtime_reads_them(source: str) -> None:
    wasm = wasmtime.wat2wasm(source)
    found = handler_exports(wasm)
    assert found == _handlers_as_wasmtime_reads_them(wasm)
    assert found in (["a", "a_again", "reexported", "z_last"], ["greet", "other"])


def test_the_example_plugins_handlers_are_read_as_wasmtime_reads_them() -> None:
    """Real toolchains' output (Go's tens of thousands of functions, Rust, Zig, C,
    AssemblyScript, QuickJS): the examples `scripts/dev setup` built, one per language."""
    built = {}
    for path in sorted(BUILT.glob("*.wasm"), reverse=True):
        built[path.stem.rsplit("-", 1)[1]] = path  # each language's first by name
    assert set(built) >= {"go", "rust", "zig", "c", "as", "js"}
    for path in (built[lang] for lang in ("go", "rust", "zig", "c", "as", "js")):
        wasm = path.read_bytes()
        assert handler_exports(wasm) == _handlers_as_wasmtime_reads_them(wasm), path.name


def test_an_invalid_module_still_fails_the_build_at_the_handler_scan() -> None:
    wasm = bytearray(wasmtime.wat2wasm(WAT))
    body = wasm.rindex(b"\x42\x00\x0b")  # the last function's `i64.const 0; end`
    wasm[body] = 0x41  # i32.const where its type says i64: well-formed, but not valid
    with pytest.raises(wasmtime.WasmtimeError):
        handler_exports(bytes(wasm))
