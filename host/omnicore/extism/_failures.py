"""An Extism call's failure as omnicore's typed error, in Extism's words (specs/extism.md).

``timeout``, ``oom``, ``trap: call stack exhausted``, the message a plugin set before it
trapped, the kernel function that was given an invalid offset: each failure says what an
Extism user would read, and which limit or manifest key was involved.
"""

from __future__ import annotations

import re
from typing import Protocol

import wasmtime

from omnicore.errors import (
    DeadlineExceeded,
    FuelExhausted,
    GuestError,
    MemoryLimitExceeded,
    PluginCallError,
    Trap,
)
from omnicore.extism._links import COMMAND_INSTANCES
from omnicore.sandbox.fastcall import GuestFailure
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.module import EXTISM_ENV

__all__ = ["call_error", "first_line"]

_KERNEL_FRAME = re.compile(r"extism_kernel!\$?(\w+)")


class Failed(Protocol):
    """The instance a call failed on."""

    deadline_hit: bool

    def memory_sizes(self) -> tuple[int, int]: ...


def call_error(name: str, limits: Limits, f: GuestFailure, handler: str,
               inst: Failed | None, said: str | None) -> PluginCallError:
    """The error for failure ``f`` of ``handler``; ``said`` is the error the plugin set."""
    who = f"plugin {name!r} handler {handler!r}"
    tail = "; the instance was discarded"
    lim = limits
    if f.code == wasmtime.TrapCode.INTERRUPT or (inst is not None and inst.deadline_hit):
        return DeadlineExceeded(
            f"{who}: timeout (deadline of {lim.timeout_ms} ms, limits.timeout_ms: the Extism "
            f"manifest's timeout_ms){tail}",
            plugin=name, handler=handler, limit="timeout_ms", value=lim.timeout_ms)
    if f.code == wasmtime.TrapCode.OUT_OF_FUEL:
        return FuelExhausted(f"{who}: plugin ran out of fuel ({lim.fuel}, limits.fuel){tail}",
                             plugin=name, handler=handler, limit="fuel",
                             value=lim.fuel)
    if f.exit_status is not None:
        msg = f"WASI exit code {f.exit_status}"
        return GuestError(f"{who} failed: {msg}{tail}", plugin=name,
                          handler=handler, guest_message=msg)
    frames = _KERNEL_FRAME.findall(f.message)
    if "oom" in frames or "oom:" in f.message or (inst is not None and max(inst.memory_sizes())
                               + max(2**20, lim.max_memory_bytes // 16)
                               > lim.max_memory_bytes):
        return MemoryLimitExceeded(
            f"{who}: oom: memory reached limits.max_memory_bytes ({lim.max_memory_bytes}, the "
            f"Extism manifest's memory.max_pages): "
            f"{first_line(f.message)}{tail}", plugin=name, handler=handler,
            limit="max_memory_bytes", value=lim.max_memory_bytes)
    if said is not None:
        # As Extism: an error the plugin set before trapping (an AssemblyScript abort
        # handler, a panic hook) is the message.
        return Trap(f"{who} failed: {said} (then trapped: {first_line(f.message)}){tail}",
                    plugin=name, handler=handler)
    if frames and "host function" not in first_line(f.message):
        return Trap(f"{who}: trap: it passed an invalid offset to {EXTISM_ENV}.{frames[-1]} "
                    f"(outside kernel memory or the input){tail}", plugin=name,
                    handler=handler)
    if "instance count too high" in f.message:
        return Trap(f"{who} trapped: it called the exports of command modules it links "
                    f"(ones exporting _start) more than {COMMAND_INSTANCES} times, and each "
                    f"call makes an instance of one{tail}", plugin=name, handler=handler)
    if f.code == wasmtime.TrapCode.STACK_OVERFLOW:
        return Trap(f"{who}: trap: call stack exhausted{tail}", plugin=name,
                    handler=handler)
    return Trap(f"{who} trapped: {first_line(f.message)}{tail}", plugin=name,
                handler=handler)


def first_line(text: str) -> str:
    """The line of a wasmtime error that says what happened (its first cause)."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if "Caused by:" in lines:
        rest = lines[lines.index("Caused by:") + 1:]
        if rest:
            return re.sub(r"^\d+: ", "", rest[0])
    return lines[0] if lines else "trap"
