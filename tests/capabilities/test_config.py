"""omnicore:config (specs/abi.md §4.2): the plugin's own section, §3.2 buffer protocol."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from omnicore.capabilities.config import _State, _value, lookup
from omnicore.errors import ConfigError, GuestError, InvalidModule
from omnicore.sandbox import PluginRuntime, wasmbin

Make = Callable[..., PluginRuntime]

CONFIG = {"greeting": "Hello", "n": 42, "on": True, "db": {"host": "h", "port": 5432},
          "long": "x" * 100, "uni": "héllo"}


@pytest.fixture
def rt(make: Make) -> PluginRuntime:
    return make("config", grants=["config"], config=CONFIG)


@pytest.mark.parametrize(("key", "want"), [
    ("greeting", b"Hello"),
    ("n", b"42"),
    ("on", b"true"),
    ("db", b'{"host":"h","port":5432}'),
    ("db.port", b"5432"),
    ("db.host", b"h"),
    ("long", b"x" * 100),  # does not fit 16 bytes: the guest retries with the right size
    ("uni", "héllo".encode()),
])
def test_get(rt: PluginRuntime, key: str, want: bytes) -> None:
    assert rt.call("get", key.encode()) == want


def test_whole_section(rt: PluginRuntime) -> None:
    assert json.loads(rt.call("get", b"")) == CONFIG


@pytest.mark.parametrize("key", ["missing", "db.missing", "greeting.x", "n.0"])
def test_absent_is_not_found(rt: PluginRuntime, key: str) -> None:
    with pytest.raises(GuestError, match="absent"):
        rt.call("get", key.encode())


def test_invalid_utf8_key(rt: PluginRuntime) -> None:
    with pytest.raises(GuestError, match="absent"):  # -3 INVALID is negative as well
        rt.call("get", b"\xff")


def test_each_plugin_sees_only_its_own_section(make: Make) -> None:
    a = make("config", grants=["config"], config={"secret": "alpha's"}, name="alpha")
    b = make("config", grants=["config"], config={"other": 1}, name="beta")
    assert a.call("get", b"secret") == b"alpha's"
    with pytest.raises(GuestError):
        b.call("get", b"secret")


def test_config_grant_takes_no_options(make: Make) -> None:
    with pytest.raises(ConfigError, match="takes no options"):
        make("config", grants={"config": {"all": True}})


SCHEMA = {"type": "object", "properties": {"greeting": {"type": "string"},
                                           "n": {"type": "integer", "minimum": 1}},
          "required": ["greeting"], "additionalProperties": False}


def with_schema(wat: Callable[[str], bytes], schema: Any) -> bytes:
    return wasmbin.set_custom_section(wat("config"), "omnicore.manifest",
                                      json.dumps({"name": "cfg", "config": schema}).encode())


def test_config_validated_against_manifest_schema(make: Make,
                                                  wat: Callable[[str], bytes]) -> None:
    wasm = with_schema(wat, SCHEMA)
    ok = make(wasm, grants=["config"], config={"greeting": "hi", "n": 3})
    assert ok.call("get", b"n") == b"3"
    with pytest.raises(ConfigError, match=r"config n: 0 is less than the minimum of 1") as info:
        make(wasm, grants=["config"], config={"greeting": "hi", "n": 0})
    assert info.value.key == "plugins.cfg.config.n"
    with pytest.raises(ConfigError, match="'greeting' is a required property"):
        make(wasm, grants=["config"], config={})
    with pytest.raises(ConfigError, match="Additional properties"):
        make(wasm, grants=["config"], config={"greeting": "x", "extra": 1})


def test_invalid_schema_in_manifest(make: Make, wat: Callable[[str], bytes]) -> None:
    # The schema is the module's: a bad one makes the module invalid, whatever the config.
    with pytest.raises(InvalidModule, match="config schema is invalid"):
        make(with_schema(wat, {"type": "no-such-type"}), grants=["config"], config={})


def test_lookup_helper() -> None:
    assert lookup({"a": {"b": [1, 2]}}, "a.b") == b"[1,2]"
    assert lookup({}, "") == b"{}"
    assert lookup({"a": None}, "a") == b"null"
    assert lookup({"a": 1}, "b") is None




def test_absent_keys_take_no_memory_however_many_a_guest_asks_for() -> None:
    # A guest asking for ever new absent keys must not grow the host's cache: only values
    # found are kept (a found value is asked again; an absent one costs one lookup).
    state = _State({"greeting": "hi"})
    for i in range(1000):
        assert _value(state, f"absent.{i}") is None
    assert _value(state, "greeting") == b"hi"
    assert list(state.cache) == ["greeting"]
