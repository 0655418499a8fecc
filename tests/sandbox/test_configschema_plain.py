"""A plain config schema is judged without jsonschema (issue 63: a bare file's ``omnicore
call``), and only ever to say "valid": each verdict is checked against jsonschema here, and
what is not plainly valid still gets jsonschema's refusal, in its words."""

from __future__ import annotations

import random
from typing import Any

import jsonschema
import pytest

from omnicore.errors import ConfigError, InvalidModule
from omnicore.sandbox import configschema
from omnicore.sandbox.configschema import _accepts, _plain

_VALUES: list[Any] = [None, True, False, 0, 1, -3, 2.0, 2.5, float("inf"), 10**30, "", "ab",
                      "héllo", [], [1, "a"], ["x", "y"], {}, {"a": 1}, {"a": "s", "b": [2]},
                      {"b": None}]


def _schema(rng: random.Random, depth: int = 0) -> Any:
    """A schema of the plain keywords, with right and wrong values for them (and now and
    then a keyword outside them)."""
    if rng.random() < 0.1:
        return rng.choice([True, False])
    out: dict[str, Any] = {}
    for _ in range(rng.randint(0, 4)):
        key = rng.choice(["type", "properties", "required", "additionalProperties", "items",
                          "minimum", "maximum", "minLength", "maxLength", "title",
                          "description", "format", "default", "examples", "enum", "const",
                          "pattern", "$schema", "minItems"])
        if key == "type":
            out[key] = rng.choice(["object", "string", "integer", "number", "array", "null",
                                   "boolean", "no-such-type", 5, [], ["string", "null"],
                                   ["integer", "integer"], ["object"]])
        elif key == "properties":
            out[key] = ({k: _schema(rng, depth + 1) for k in rng.sample("abc", 2)}
                        if depth < 3 and rng.random() < 0.9 else rng.choice([[], 5, {"a": 3}]))
        elif key == "required":
            out[key] = rng.choice([[], ["a"], ["a", "b"], ["a", "a"], "a", [1]])
        elif key in ("additionalProperties", "items"):
            out[key] = _schema(rng, depth + 1) if depth < 3 else rng.choice([True, 3])
        elif key in ("minimum", "maximum"):
            out[key] = rng.choice([0, 1, -2.5, 10**31, True, "1", None])
        elif key in ("minLength", "maxLength", "minItems"):
            out[key] = rng.choice([0, 1, 2, -1, 1.0, True, "2"])
        elif key in ("title", "description", "format"):
            out[key] = rng.choice(["t", "uri", 3, None])
        elif key in ("examples", "enum"):
            out[key] = rng.choice([[], ["a", 1], "a", [{"a": 1}]])
        elif key == "pattern":
            out[key] = rng.choice(["^a", "("])
        elif key == "$schema":
            out[key] = "https://json-schema.org/draft/2020-12/schema"
        else:
            out[key] = rng.choice(_VALUES)
    return out


def _jsonschema_valid_schema(schema: Any) -> bool:
    # A plain schema has no $schema: jsonschema takes it for draft 2020-12.
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError:
        return False
    return True


def test_what_is_plainly_valid_jsonschema_finds_valid() -> None:
    rng = random.Random(63)
    plain = accepted = refused_plain = 0
    for _ in range(1500):
        schema = _schema(rng)
        if not _plain(schema):
            continue
        plain += 1
        assert _jsonschema_valid_schema(schema), schema
        validator = jsonschema.Draft202012Validator(schema)
        for value in _VALUES:
            if _accepts(schema, value):
                accepted += 1
                assert validator.is_valid(value), (schema, value)
            elif not validator.is_valid(value):
                refused_plain += 1
    # The sample reaches every side: plain schemas, values they accept, values they refuse.
    assert plain > 300 and accepted > 1000 and refused_plain > 1000


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"greeting": {"type": "string", "description": "d"}}},
    {"type": ["object", "null"], "required": ["a"], "additionalProperties": False,
     "properties": {"a": {"type": "integer", "minimum": 1, "maximum": 9, "default": 3},
                    "b": {"type": "array", "items": {"type": "string", "minLength": 1}},
                    "c": {"enum": ["x", "y"]}, "d": True, "e": {"const": 1}}},
])
def test_plain_schemas_met_in_plugins_are_plain(schema: dict[str, Any]) -> None:
    assert _plain(schema) and _jsonschema_valid_schema(schema)
    configschema.check(schema, "p")


@pytest.mark.parametrize(("schema", "match"), [
    ({"type": "no-such-type"}, "is not valid under any of the given schemas"),
    ({"type": []}, "[] is not valid under any of the given schemas"),
    ({"type": ["string", "string"]}, "is not valid under any of the given schemas"),
    ({"required": "a"}, "is not of type 'array'"),
    ({"required": ["a", "a"]}, "has non-unique elements"),
    ({"minLength": -1}, "less than the minimum of 0"),
    ({"properties": {"a": 5}}, "is not of type 'object', 'boolean'"),
    ({"minimum": "1"}, "is not of type 'number'"),
    ({"enum": "a"}, "is not of type 'array'"),
])
def test_a_schema_not_plainly_valid_is_refused_by_jsonschema(schema: dict[str, Any],
                                                           match: str) -> None:
    assert not _plain(schema)
    with pytest.raises(InvalidModule, match="manifest config schema is invalid") as info:
        configschema.check(schema, "p")
    assert match in str(info.value)


SCHEMA = {"type": "object", "required": ["greeting"], "additionalProperties": False,
          "properties": {"greeting": {"type": "string", "minLength": 2},
                         "n": {"type": "integer", "minimum": 1},
                         "mode": {"enum": ["a", "b"]}}}


@pytest.mark.parametrize(("config", "match", "key"), [
    ({}, "config (root): 'greeting' is a required property", "plugins.p.config.(root)"),
    ({"greeting": 5}, "config greeting: 5 is not of type 'string'", "plugins.p.config.greeting"),
    ({"greeting": "x"}, "config greeting: 'x' is too short", "plugins.p.config.greeting"),
    ({"greeting": "hi", "n": 0}, "config n: 0 is less than the minimum of 1",
     "plugins.p.config.n"),
    ({"greeting": "hi", "n": True}, "config n: True is not of type 'integer'",
     "plugins.p.config.n"),
    ({"greeting": "hi", "extra": 1}, "Additional properties are not allowed",
     "plugins.p.config.(root)"),
    ({"greeting": "hi", "mode": "c"}, "config mode: 'c' is not one of ['a', 'b']",
     "plugins.p.config.mode"),
])
def test_bad_config_against_a_plain_schema_is_refused_in_jsonschemas_words(
        config: dict[str, Any], match: str, key: str) -> None:
    assert _plain(SCHEMA)
    with pytest.raises(ConfigError) as info:
        configschema.validate(config, SCHEMA, "p")
    assert match in str(info.value) and info.value.key == key


@pytest.mark.parametrize("config", [
    {"greeting": "hi"}, {"greeting": "hi", "n": 3}, {"greeting": "hi", "n": 2.0},
    {"greeting": "hi", "mode": "a"}])
def test_good_config_against_a_plain_schema_passes(config: dict[str, Any]) -> None:
    configschema.validate(config, SCHEMA, "p")  # 2.0 and the enum: decided by jsonschema
