"""An Extism call's failure as facts for the one classifier (:mod:`omnicore.sandbox.failures`).

The messages are every runtime's, which keep Extism's words (``timeout``, ``oom``, ``trap:
call stack exhausted``); the facts only Extism has are the message a plugin set before it
trapped and the kernel function that was given an invalid offset (specs/extism.md).
"""

from __future__ import annotations

import re
from typing import Protocol

from omnicore.errors import PluginCallError
from omnicore.extism._links import COMMAND_INSTANCES
from omnicore.sandbox.failures import Facts, cause_line, classify
from omnicore.sandbox.fastcall import GuestFailure
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.module import EXTISM_ENV

__all__ = ["call_error", "first_line"]

#: Where an Extism user sets the limits (specs/extism.md maps the manifest onto them).
_ORIGINS = {"timeout_ms": "the Extism manifest's timeout_ms",
            "max_memory_bytes": "the Extism manifest's memory.max_pages"}
_KERNEL_FRAME = re.compile(r"extism_kernel!\$?(\w+)")


class Failed(Protocol):
    """The instance a call failed on."""

    deadline_hit: bool
    refusal: str | None

    def memory_sizes(self) -> tuple[int, int]: ...


def call_error(name: str, limits: Limits, f: GuestFailure, handler: str,
               inst: Failed | None, said: str | None) -> PluginCallError:
    """The error for failure ``f`` of ``handler``; ``said`` is the error the plugin set.

    The facts are Extism's: our kernel traps with ``oom`` when its memory is refused (a
    refusal it reports, where wasmtime's limiter is silent), and a trap in one of its
    functions comes from an offset the plugin passed it.
    """
    frames = _KERNEL_FRAME.findall(f.message)
    detail = None
    if frames and "host function" not in first_line(f.message):
        detail = (f"it passed an invalid offset to {EXTISM_ENV}.{frames[-1]} "
                  "(outside kernel memory or the input)")
    elif "instance count too high" in f.message:
        detail = (f"it called the exports of command modules it links (ones exporting "
                  f"_start) more than {COMMAND_INSTANCES} times, and each call makes an "
                  "instance of one")
    kernel_oom = "oom" in frames or "oom:" in f.message
    return classify(name, handler, limits, Facts(
        message=f.message, code=f.code, exit_status=f.exit_status, said=said, detail=detail,
        deadline=inst.deadline_hit if inst is not None else f.deadline_hit,
        instantiating=(f.stage == "instantiate" and f.code is None and f.refusal is None
                       and not f.deadline_hit),
        memory_refused=True if kernel_oom else None,
        memory_bytes=max(inst.memory_sizes()) if inst is not None else 0,
        refusal=inst.refusal if inst is not None else f.refusal), origins=_ORIGINS)


def first_line(text: str) -> str:
    """The line of a wasmtime error that says what happened (its first cause)."""
    return cause_line(text)
