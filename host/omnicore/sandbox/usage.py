"""What a plugin's live instances hold and have burnt: linear memory in bytes, fuel.

The console samples it every few seconds (``console/series``), so measuring must never race
a call. An idle instance is taken out of its pool for the read (atomically: a caller meanwhile
gets another instance or waits a moment), or read under the pool's lock when the idle reaper
parked it, and its memory size is read fresh; an instance busy in a call counts at the size
its own call last saw (a Python int, safe to read from here).
Fuel is read by the calling thread after each metered call and added to the runtime's
:class:`FuelMeter`, so what an instance burnt outlives it (freed after a trap, after its one
call under ``isolation: per-call``, or when idle).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omnicore.sandbox.fastcall import RawInstance
    from omnicore.sandbox.pool import InstancePool

__all__ = ["FuelMeter", "Usage", "measure"]


@dataclass(frozen=True, slots=True)
class Usage:
    """``memory_bytes`` of every live instance; ``fuel`` consumed since the runtime was
    linked, None when its calls are not metered (no ``limits.fuel``)."""

    memory_bytes: int
    fuel: int | None


class FuelMeter:
    """The fuel every instance of one runtime burnt, added to by the calling threads."""

    __slots__ = ("_lock", "total")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0

    def add(self, n: int) -> None:
        with self._lock:  # calls on several instances finish at once
            self.total += n


def measure(pool: InstancePool[RawInstance], live: dict[int, RawInstance],
             fuel: int | None) -> Usage:
    """The memory of the instances in ``live`` (a runtime's, by store context); ``fuel`` as
    the runtime's meter says (None: not metered)."""
    memory = 0
    for inst in list(live.values()):
        mem = getattr(inst, "memory", None)   # None while the instance is being made
        if mem is None:
            continue
        # An idle one (listed, or parked by the idle reaper's sweep) is read fresh: ``mem.size``
        # is what a host access last saw, and a guest's own memory.grow leaves it behind (a
        # parked instance grown by three calls read 128 KiB, not 3.1 MiB: the console's chart
        # stuck until the instance was next called).
        size = pool.read_idle(inst, _fresh_size)
        memory += mem.size if size is None else size
    return Usage(memory, fuel)


def _fresh_size(inst: RawInstance) -> int:
    return inst.memory_size()
