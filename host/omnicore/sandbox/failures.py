"""One verdict per failure: a failed call's facts -> the error of ``omnicore.errors``.

Every runtime (ABI v1 plugins in ``sandbox.runtime``, Extism plugins in ``omnicore.extism``,
components in ``sandbox.component``) collects what it knows about a failed call as
:class:`Facts` (the trap code, its deadline and fuel state, its memory limiter's record, the
WASI exit status, the host function that refused) and asks :func:`classify` for the error.
So a cause gets one class and one message shape whichever runtime it happened on, and the
order in which causes win is written once:

1. a runtime-specific limit (``Facts.limit``), 2. the deadline, 3. fuel, 4. at
instantiation: the declared sizes, 5. the memory limit (a refused growth explains whatever
the guest did next, a ``proc_exit`` or a trap), 6. ``proc_exit``, 7. the error the guest set
before trapping, 8. a host function's refusal, 9. stack overflow, 10. any other trap.

wasmtime reports some causes only as text: an instantiation refused for its declared memory
or tables, and (components: wasmtime-py gives no trap code there) the trap's kind. Those
texts are read here and nowhere else (:func:`code_of`, :func:`_declared`, a GC heap's
refused growth).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import wasmtime

from omnicore.errors import (
    DeadlineExceeded,
    FuelExhausted,
    LimitExceeded,
    MemoryLimitExceeded,
    PluginCallError,
    Trap,
)
from omnicore.sandbox.limits import Limits

__all__ = ["DISCARDED", "Facts", "cause_line", "classify", "code_of", "memory_slack"]

#: The end of every call failure's message: the store that failed is never called again.
DISCARDED = "; the instance was discarded"

_TrapCode = wasmtime.TrapCode
#: wasmtime's trap texts, for runtimes that get no trap code (components).
_TRAP_TEXTS = (
    ("wasm trap: interrupt", _TrapCode.INTERRUPT),
    ("all fuel consumed", _TrapCode.OUT_OF_FUEL),
    ("call stack exhausted", _TrapCode.STACK_OVERFLOW),
    ("unreachable", _TrapCode.UNREACHABLE),
    ("out of bounds memory access", _TrapCode.MEMORY_OUT_OF_BOUNDS),
    ("out of bounds table access", _TrapCode.TABLE_OUT_OF_BOUNDS),
)


#: wasmtime's text when a store's GC heap may not grow (its memory limit) to allocate.
_GC_HEAP_OOM = "GC heap out of memory"


@dataclass(frozen=True, slots=True)
class Facts:
    """What a runtime knows about one failed call (or instance start)."""

    #: The engine's text; only its cause line (:func:`cause_line`) is quoted.
    message: str = ""
    #: wasmtime's trap code, when the engine reported one.
    code: wasmtime.TrapCode | None = None
    #: The runtime's deadline state says the call ran out of time (a host function flagged
    #: it, or the epochs since arming reached the deadline).
    deadline: bool = False
    #: The store's fuel is zero.
    fuel_out: bool = False
    #: The WASI exit status, when the guest called ``proc_exit``.
    exit_status: int | None = None
    #: The memory limiter refused a growth (True), did not (False), or the runtime cannot
    #: tell (None: then a memory within :func:`memory_slack` of the limit counts as refused).
    memory_refused: bool | None = None
    #: The largest memory's size in bytes now (read when ``memory_refused`` is None).
    memory_bytes: int = 0
    #: The message of the host function that refused the call (it trapped the guest).
    refusal: str | None = None
    #: The error the guest set before it trapped (Extism's error handle).
    said: str | None = None
    #: Warnings and errors the guest logged during the call (why a runtime aborted).
    logged: tuple[str, ...] = ()
    #: The failure came from instantiating (not from running guest code).
    instantiating: bool = False
    #: A runtime's explanation of the trap, said instead of the engine's cause line.
    detail: str | None = None
    #: A limit only this runtime keeps: (name, value, what was exceeded).
    limit: tuple[str, object, str] | None = None


def memory_slack(max_bytes: int) -> int:
    """How close to the limit a memory must be for its trap to count as the limit's (when
    the runtime cannot see refusals): what a typical allocator's last growth asks for."""
    return max(2**20, max_bytes // 16)


def code_of(message: str) -> wasmtime.TrapCode | None:
    """The trap code a wasmtime error's text names (for errors that carry no code)."""
    for text, code in _TRAP_TEXTS:
        if text in message:
            return code
    return None


def cause_line(text: str) -> str:
    """The line of a wasmtime error that says what happened: its innermost "Caused by"."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if "Caused by:" in lines:
        rest = lines[lines.index("Caused by:") + 1:]
        if rest:
            return re.sub(r"^\d+: ", "", rest[-1])
    return lines[0] if lines else "trap"


def _declared(message: str) -> str | None:
    """Which declared size an instantiation error refuses: "memory", "table" or None."""
    if "memory minimum size" in message:
        return "memory"
    if "table" in message and ("limit" in message or "count too high" in message):
        return "table"
    return None


def classify(plugin: str, handler: str, limits: Limits, facts: Facts, *,
             kind: str = "handler", origins: Mapping[str, str] | None = None
             ) -> PluginCallError:
    """The error for ``facts`` of a call of ``handler`` (``kind``: what the caller names it,
    "handler" or "export"). Every message names plugin, handler and the limit involved;
    ``origins`` says where a runtime's users set a limit (Extism: its manifest's keys)."""
    who = f"plugin {plugin!r} {kind} {handler!r}"
    origin = {k: f", from {v}" for k, v in (origins or {}).items()}
    lim = limits
    tail = DISCARDED
    if facts.logged:
        tail += "; the plugin logged: " + " | ".join(facts.logged[-3:])[:1000]
    code = facts.code
    cause = cause_line(facts.message)
    if facts.limit is not None:
        name, value, what = facts.limit
        return LimitExceeded(f"{who}: {what}{tail}", plugin=plugin, handler=handler,
                             limit=name, value=value)
    if facts.deadline or code == _TrapCode.INTERRUPT:
        return DeadlineExceeded(
            f"{who} exceeded its deadline of {lim.timeout_ms} ms (limits.timeout_ms"
            f"{origin.get('timeout_ms', '')}): "
            f"timeout{tail}", plugin=plugin, handler=handler, limit="timeout_ms",
            value=lim.timeout_ms)
    if facts.fuel_out or code == _TrapCode.OUT_OF_FUEL:
        return FuelExhausted(
            f"{who} used all of its fuel ({lim.fuel}, limits.fuel){tail}",
            plugin=plugin, handler=handler, limit="fuel", value=lim.fuel)
    # A start function (or a global's initialiser) that fills the GC heap fails while
    # instantiating with no trap code: the memory verdict below, not "could not be
    # instantiated" (tests/sandbox/test_gc_attack.py).
    if facts.instantiating and not cause.startswith(_GC_HEAP_OOM):
        declared = "memory" if facts.memory_refused else _declared(facts.message)
        if declared == "memory":
            return MemoryLimitExceeded(
                f"plugin {plugin!r} declares more initial memory than "
                f"limits.max_memory_bytes ({lim.max_memory_bytes}) allows: oom",
                plugin=plugin, handler=handler, limit="max_memory_bytes",
                value=lim.max_memory_bytes)
        if declared == "table":
            return LimitExceeded(
                f"plugin {plugin!r} declares more or larger tables than its limits allow "
                f"(limits.max_tables {lim.max_tables}, limits.max_table_elements "
                f"{lim.max_table_elements}): {cause}", plugin=plugin, handler=handler,
                limit="max_table_elements", value=lim.max_table_elements)
        if code is None:
            return Trap(f"plugin {plugin!r} could not be instantiated: {cause}",
                        plugin=plugin, handler=handler)
    refused = facts.memory_refused
    if cause.startswith(_GC_HEAP_OOM):
        # The GC heap (Wasm GC's structs and arrays) grows under the same store limit as
        # linear memory, and wasmtime reports its refusal only as this text (its cause line:
        # a backtrace frame's name, which the guest chooses, is not it).
        refused = True
    elif refused is None:
        refused = (facts.memory_bytes + memory_slack(lim.max_memory_bytes)
                   > lim.max_memory_bytes)
    if refused:
        return MemoryLimitExceeded(
            f"{who}: oom: its memory reached limits.max_memory_bytes ({lim.max_memory_bytes}"
            f"{origin.get('max_memory_bytes', '')}): {facts.said or cause}{tail}", plugin=plugin,
            handler=handler, limit="max_memory_bytes", value=lim.max_memory_bytes)
    if facts.exit_status is not None:
        n = facts.exit_status
        return Trap(f"{who} called proc_exit({n}) (WASI exit code {n}){tail}",
                    plugin=plugin, handler=handler)
    if facts.said is not None:
        return Trap(f"{who} failed: {facts.said} (then trapped: {cause}){tail}",
                    plugin=plugin, handler=handler)
    if facts.refusal is not None:
        return Trap(f"{who} trapped: {facts.refusal}{tail}", plugin=plugin, handler=handler)
    if code == _TrapCode.STACK_OVERFLOW:
        return Trap(f"{who} overflowed its call stack (trap: call stack exhausted; deep "
                    f"recursion?){tail}", plugin=plugin, handler=handler)
    return Trap(f"{who} trapped: {facts.detail or cause}{tail}", plugin=plugin,
                handler=handler)
