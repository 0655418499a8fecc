"""``omnicore:log`` (specs/abi.md §4.1): a plugin writes lines into its own log."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omnicore import telemetry
from omnicore.errors import ConfigError
from omnicore.sandbox import capability as cap
from omnicore.sandbox.pluginlog import LEVELS, PluginLog, level_number

__all__ = ["CAPABILITY", "MAX_MESSAGE_BYTES"]

#: Longer messages are cut: one line in a 1,000-line ring buffer should not hold megabytes.
MAX_MESSAGE_BYTES = 64 * 1024


def _bind(ctx: cap.PluginContext) -> PluginLog:
    level = ctx.grant.get("level")
    if level is not None:
        ctx.log.min_level = level_number(level)
    return ctx.log


def _check_grant(options: Mapping[str, Any]) -> None:
    unknown = set(options) - {"level"}
    if unknown:
        raise ConfigError(f"unknown option(s) for grant 'log': {', '.join(sorted(unknown))}; "
                          "known: level", key=f"grant.log.{sorted(unknown)[0]}")
    level = options.get("level", "info")
    try:
        level_number(level)
    except (ValueError, TypeError):
        raise ConfigError(f"grant.log.level must be one of {', '.join(LEVELS)}, got {level!r}",
                          key="grant.log.level", value=level) from None


def _write(log: PluginLog, mem: cap.GuestMemory, level: int, ptr: int, length: int) -> None:
    if level_number(level) < log.min_level:
        mem.check(ptr, length, "log message")  # a bad pointer traps even when filtered
        return
    cut = min(length, MAX_MESSAGE_BYTES)
    mem.check(ptr, length, "log message")
    text = mem.read_str(ptr, cut, "log message")
    if cut < length:
        text += f"… [{length - cut} bytes cut]"
    if telemetry.ON:
        text += telemetry.log_ids()
    log.write(level, text)


def _enabled(log: PluginLog, _mem: cap.GuestMemory, level: int) -> int:
    return 1 if log.enabled(level) else 0


# omnicore:plugin/log (sdk/wit/plugin.wit): the same for components; the level is the
# enum's case name.
_LEVEL = "enum { trace, debug, info, warn, error }"
#: Each case of that enum to its level number, mapped once: a component's import has exactly
#: this enum (checked at load), so its case names are these (anything else: level_number).
_WIT_LEVELS = {name: number for number, name in enumerate(LEVELS)}


def _wit_write(log: PluginLog, level: str, message: str) -> None:
    number = _WIT_LEVELS.get(level)
    if number is None:
        number = level_number(level)
    if number < log.min_level:
        return
    data = message.encode("utf-8", "replace")
    if len(data) > MAX_MESSAGE_BYTES:
        message = data[:MAX_MESSAGE_BYTES].decode("utf-8", "ignore") + \
            f"… [{len(data) - MAX_MESSAGE_BYTES} bytes cut]"
    if telemetry.ON:
        message += telemetry.log_ids()
    log.write(number, message)


def _wit_enabled(log: PluginLog, level: str) -> bool:
    number = _WIT_LEVELS.get(level)
    if number is None:
        return log.enabled(level_number(level))
    return number >= log.min_level


CAPABILITY = cap.Capability(
    name="log",
    description="write lines to the plugin's own log (granted by default)",
    functions=(
        cap.HostFunction("write", ("i32", "ptr", "len"), (), _write),
        cap.HostFunction("enabled", ("i32",), ("i32",), _enabled),
    ),
    default_grant=True,
    bind=_bind,
    wit=(cap.WitFunction("write", f"func(level: {_LEVEL}, message: string)", _wit_write),
         cap.WitFunction("enabled", f"func(level: {_LEVEL}) -> bool", _wit_enabled)),
    check_grant=_check_grant,
)
