"""``omnicore:config`` (specs/abi.md §4.2): a plugin reads its own config section."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from omnicore import telemetry
from omnicore.errors import ConfigError
from omnicore.sandbox import capability as cap

__all__ = ["CAPABILITY", "lookup"]

#: The plugin call span's attribute counting its config reads (omnicore.telemetry.count): a
#: read is a dictionary lookup, never a span of its own.
COUNTED = "omnicore.plugin.host_calls.config"


def lookup(config: Mapping[str, Any], key: str) -> bytes | None:
    """The §4.2 text of ``key`` in ``config`` (dotted path; "" = whole section), or None."""
    value: Any = config
    if key:
        for part in key.split("."):
            if not isinstance(value, Mapping) or part not in value:
                return None
            value = value[part]
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()


def _check_grant(options: Mapping[str, Any]) -> None:
    if options:
        raise ConfigError(f"grant 'config' takes no options, got {sorted(options)}",
                          key="grant.config")


class _State:
    """Per plugin: its config, and the encoded values of keys that exist (a finite set, so
    the cache cannot be grown by a guest asking for keys that do not)."""

    __slots__ = ("cache", "config", "max_key")

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = config
        self.cache: dict[str, bytes] = {}
        # No dotted path into the config is longer than the config's own JSON text, so a
        # longer key is absent without copying it out of the guest or splitting it.
        self.max_key = len(json.dumps(config, default=str).encode())


def _value(state: _State, text: str) -> bytes | None:
    value = state.cache.get(text)
    if value is None:
        value = lookup(state.config, text)
        if value is not None:
            state.cache[text] = value
    return value


def _get(state: _State, mem: cap.GuestMemory, kptr: int, klen: int, out: int, out_cap: int) -> int:
    if telemetry.ON:
        telemetry.count(COUNTED)
    if klen > state.max_key:
        mem.check(kptr, klen, "config key")
        mem.check(out, out_cap, "output buffer")
        return cap.Status.NOT_FOUND
    key = mem.read(kptr, klen, "config key")
    try:
        text = key.decode("utf-8")
    except UnicodeDecodeError:
        mem.check(out, out_cap, "output buffer")
        return cap.Status.INVALID
    value = _value(state, text)
    if value is None:
        mem.check(out, out_cap, "output buffer")
        return cap.Status.NOT_FOUND
    return mem.write_result(value, out, out_cap)


def _wit_get(state: _State, key: str) -> str | None:
    """``omnicore:plugin/config.get`` for components."""
    if telemetry.ON:
        telemetry.count(COUNTED)
    if len(key) > state.max_key:
        return None
    value = _value(state, key)
    return None if value is None else value.decode("utf-8")


CAPABILITY = cap.Capability(
    name="config",
    description="read the plugin's own config section",
    functions=(cap.HostFunction("get", ("ptr", "len", "ptr", "len"), ("i32",), _get),),
    wit=(cap.WitFunction("get", "func(key: string) -> option<string>", _wit_get),),
    bind=lambda ctx: _State(ctx.config),
    check_grant=_check_grant,
)
