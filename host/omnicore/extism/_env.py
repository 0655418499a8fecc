"""The host half of ``extism:host/env``: Extism's host functions on omnicore's capabilities.

Each is an ``impl(state, memory, *args)`` for the sandbox's raw host-function path, where
``memory`` is the calling instance's kernel memory (its ``owner`` the instance). Handles are
kernel handles; the key/message handles a function receives are freed, as Extism does.
Failures raise HostTrap with Extism's words: the call fails, the host keeps serving.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from omnicore.sandbox.fastcall import GuestMemory, HostTrap
from omnicore.sandbox.pluginlog import PluginLog

if TYPE_CHECKING:
    from omnicore.extism._runtime import Instance

__all__ = ["ENV_FUNCTIONS", "EnvState", "KernelMemory"]


class KernelMemory(GuestMemory):
    """The kernel's memory of one instance, carrying the instance for host functions."""

    __slots__ = ("owner",)

    owner: Instance


@dataclass(frozen=True)
class EnvState:
    """What the host functions of one runtime share: its config, log and var limit."""

    config: Mapping[str, Any]
    log: PluginLog
    max_var_bytes: int


def _text(value: Any) -> bytes:
    return (value if isinstance(value, str)
            else json.dumps(value, separators=(",", ":"))).encode()


def config_get(state: EnvState, mem: KernelMemory, key: int) -> int:
    inst = mem.owner
    name = inst.take_text(key, "config key")
    value = state.config.get(name)
    return 0 if value is None else inst.new_block(_text(value))


def var_get(state: EnvState, mem: KernelMemory, key: int) -> int:
    inst = mem.owner
    value = inst.vars.get(inst.take_text(key, "var key"))
    return 0 if value is None else inst.new_block(value)


def var_set(state: EnvState, mem: KernelMemory, key: int, value: int) -> None:
    inst = mem.owner
    if state.max_var_bytes == 0:
        raise HostTrap("Vars are disabled by this host")
    name = inst.take_text(key, "var key")
    if value == 0:
        inst.vars.pop(name, None)
        return
    data = inst.take_bytes(value, "var value")
    # Counted as stored: every key and value, the new pair in place of the old one.
    used = sum(len(k.encode()) + len(v) for k, v in inst.vars.items() if k != name)
    if used + len(name.encode()) + len(data) > state.max_var_bytes:
        raise HostTrap("Variable store is full")
    inst.vars[name] = data


def _logger(level: int) -> Callable[[EnvState, KernelMemory, int], None]:
    def log(state: EnvState, mem: KernelMemory, msg: int) -> None:
        text = mem.owner.take_bytes(msg, "log message").decode("utf-8", "replace")
        state.log.write(level, text)

    return log


def get_log_level(state: EnvState, mem: KernelMemory) -> int:
    return state.log.min_level


_NO_HTTP = ("HTTP is not available to Extism plugins in this omnicore version (the http "
            "capability has not landed; see specs/extism.md)")


def http_request(state: EnvState, mem: KernelMemory, req: int, body: int) -> int:
    raise HostTrap(_NO_HTTP)


def http_status_code(state: EnvState, mem: KernelMemory) -> int:
    return 0


def http_headers(state: EnvState, mem: KernelMemory) -> int:
    return 0


Impl = Callable[..., Any]

#: name -> (params, results, impl) for every host function of ``extism:host/env``.
ENV_FUNCTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], Impl]] = {
    "config_get": (("i64",), ("i64",), config_get),
    "var_get": (("i64",), ("i64",), var_get),
    "var_set": (("i64", "i64"), (), var_set),
    "log_trace": (("i64",), (), _logger(0)),
    "log_debug": (("i64",), (), _logger(1)),
    "log_info": (("i64",), (), _logger(2)),
    "log_warn": (("i64",), (), _logger(3)),
    "log_error": (("i64",), (), _logger(4)),
    "get_log_level": ((), ("i32",), get_log_level),
    "http_request": (("i64", "i64"), ("i64",), http_request),
    "http_status_code": ((), ("i32",), http_status_code),
    "http_headers": ((), ("i64",), http_headers),
}
