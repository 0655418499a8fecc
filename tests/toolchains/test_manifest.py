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
from omnicore.toolchains.manifest import embed_manifest, read_plugin_meta

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
