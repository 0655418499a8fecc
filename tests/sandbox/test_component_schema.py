"""WIT signatures as JSON Schema (sandbox/component/schema.py): every export of a real
component (componentize-qjs, tests/sandbox/components/types.wit) gets the schema of its
arguments, the schema and the host's own check agree on values generated from the schema
and on their mutations, and a call with an object keyed by parameter names is the call with
the array."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from omnicore.errors import InvalidInput
from omnicore.mcp.tools import Exposure, tools_of
from omnicore.plugins.host import PluginHost
from omnicore.sandbox import PluginModule
from omnicore.sandbox.component import ComponentModule, ComponentRuntime
from omnicore.sandbox.component.schema import arguments_list, arguments_schema
from omnicore.sandbox.component.values import WrongValue
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.limits import Limits
from tests.compiler import BASELINE
from tests.component_fixtures import js_component


@pytest.fixture(scope="module")
def module() -> Iterator[ComponentModule]:
    with SandboxEngine(baseline=BASELINE) as engine:
        mod = PluginModule.load(engine, js_component("types"), "types")
        assert isinstance(mod, ComponentModule)
        yield mod


def _sample(schema: dict[str, Any], rnd: random.Random, depth: int = 0) -> Any:
    """A random value the schema admits (the subset schema_of writes)."""
    if "oneOf" in schema:
        return _sample(rnd.choice(schema["oneOf"]), rnd, depth + 1)
    if "anyOf" in schema:
        return _sample(rnd.choice(schema["anyOf"]), rnd, depth + 1)
    if "enum" in schema:
        return rnd.choice(schema["enum"])
    kind = schema.get("type")
    if kind == "null":
        return None
    if kind == "boolean":
        return rnd.random() < 0.5
    if kind == "integer":
        return rnd.choice([schema["minimum"], schema["maximum"],
                           rnd.randint(schema["minimum"], schema["maximum"])])
    if kind == "number":
        return rnd.uniform(-1e6, 1e6)
    if kind == "string":
        n = schema.get("maxLength", rnd.randint(0, 8))
        return "".join(rnd.choice("aé🌍z") for _ in range(n))
    if kind == "array" and "prefixItems" in schema:
        return [_sample(s, rnd, depth + 1) for s in schema["prefixItems"]]
    if kind == "array":
        if schema.get("uniqueItems"):
            names = schema["items"]["enum"]
            return rnd.sample(names, rnd.randint(0, len(names)))
        return [_sample(schema["items"], rnd, depth + 1) for _ in range(rnd.randint(0, 3))]
    if kind == "object":
        return {k: _sample(s, rnd, depth + 1) for k, s in schema["properties"].items()}
    raise AssertionError(f"a schema the sampler does not know: {schema}")


def _host_accepts(fn: Any, args: Any) -> bool:
    try:
        for (name, codec), value in zip(fn.params, arguments_list(fn.params, args),
                                        strict=True):
            codec.check(value, name)
    except (WrongValue, ValueError):
        return False
    return True


def _mutations(args: dict[str, Any], schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield {**args, "no-such-parameter": 1}
    for name, sub in schema["properties"].items():
        yield {k: v for k, v in args.items() if k != name}  # one missing
        if sub.get("type") == "integer":
            yield {**args, name: sub["maximum"] + 1}
            yield {**args, name: sub["minimum"] - 1}
            yield {**args, name: True}
        elif sub.get("type") == "string" and "enum" in sub:
            yield {**args, name: "not-a-case"}
        elif sub.get("type") == "string" and sub.get("maxLength") == 1:
            yield {**args, name: "ab"}
        elif sub.get("type") == "object":
            yield {**args, name: {**args[name], "extra": 1}} if args[name] else {
                **args, name: []}
        elif "oneOf" in sub:
            yield {**args, name: {"no-such-case": None}}
        else:
            yield {**args, name: 5 if sub.get("type") == "string" else {"no-such-case": [[]]}}


def test_every_export_has_a_valid_schema_that_agrees_with_the_host_check(
        module: ComponentModule) -> None:
    world = module.world
    assert world is not None
    declared = {h["name"]: h for h in module.manifest["handlers"]}
    rnd = random.Random(20261124)
    checked = 0
    for fn in world.functions.values():
        schema = arguments_schema(fn.params)
        assert declared[fn.name]["input_schema"] == schema
        assert declared[fn.name]["wit"] == fn.signature
        jsonschema.Draft202012Validator.check_schema(schema)
        validator = jsonschema.Draft202012Validator(schema)
        for _ in range(40):
            args = _sample(schema, rnd)
            json.dumps(args)  # what a client would send
            assert validator.is_valid(args), (fn.name, args)
            assert _host_accepts(fn, args), (fn.name, args)
            for bad in _mutations(args, schema):
                if bad == args:
                    continue
                assert not validator.is_valid(bad) and not _host_accepts(fn, bad), (
                    fn.name, bad)
                checked += 1
    assert checked > 500


def test_an_object_of_named_arguments_is_the_same_call_as_the_array() -> None:
    with SandboxEngine(baseline=BASELINE) as engine:
        mod = PluginModule.load(engine, js_component("types"), "types")
        assert isinstance(mod, ComponentModule)
        with ComponentRuntime(engine, mod, Limits()) as rt:
            pairs = [("greet", ["Ada"], {"name": "Ada"}), ("add", [2, 40], {"a": 2, "b": 40}),
                     ("test:types/shapes#area", [{"square": {"x": 3, "y-coord": 4}}],
                      {"s": {"square": {"x": 3, "y-coord": 4}}})]
            for export, array, obj in pairs:
                assert rt.call(export, json.dumps(obj).encode()) == \
                    rt.call(export, json.dumps(array).encode())
            with pytest.raises(InvalidInput, match="missing parameter 'b'"):
                rt.call("add", b'{"a": 1}')
            with pytest.raises(InvalidInput, match="no parameter 'c'"):
                rt.call("add", b'{"a": 1, "b": 2, "c": 3}')
            with pytest.raises(InvalidInput, match=r"argument b: expected a u8"):
                rt.call("add", b'{"a": 1, "b": 300}')


def test_mcp_tools_of_a_component_have_their_wit_schema() -> None:
    with PluginHost() as host:
        host.load(js_component("types"), name="types")
        tools = tools_of(host, Exposure(["types/*"]))
    add = tools["types.add"]
    assert add.input_schema["properties"]["a"] == {"type": "integer", "minimum": 0,
                                                   "maximum": 255, "description": "u8"}
    assert add.description == "add: func(a: u8, b: u8) -> u32"
    assert len(tools) >= 15
