"""What a plugin's live instances hold and have burnt: linear memory in bytes, fuel.

The console samples it every few seconds (``console/series``), so measuring must never race
a call. An idle instance is taken out of its pool for the read (atomically: a caller meanwhile
gets another instance or waits a moment) and its memory size is read fresh; an instance busy
in a call counts at the size its own call last saw (a Python int, safe to read from here).
Fuel is counted by each instance after each metered call (``RawInstance.fuel_used``); what a
discarded instance had burnt is kept by its runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omnicore.sandbox.fastcall import RawInstance
    from omnicore.sandbox.pool import InstancePool

__all__ = ["Usage", "measure"]


@dataclass(frozen=True, slots=True)
class Usage:
    """``memory_bytes`` of every live instance; ``fuel`` consumed since the runtime was
    linked, None when its calls are not metered (no ``limits.fuel``)."""

    memory_bytes: int
    fuel: int | None


def measure(pool: InstancePool[RawInstance], live: dict[int, RawInstance],
            fuel_gone: int, metered: bool) -> Usage:
    """The usage of the instances in ``live`` (a runtime's, by store context)."""
    memory = fuel = 0
    for inst in list(live.values()):
        mem = getattr(inst, "memory", None)   # None while the instance is being made
        if mem is None:
            continue
        try:
            pool.idle.remove(inst)             # atomic: ValueError if a caller has it
        except ValueError:
            memory += mem.size
        else:
            try:
                memory += inst.memory_size()
            finally:
                pool.release(inst, True)
        fuel += inst.fuel_used
    return Usage(memory, fuel + fuel_gone if metered else None)
