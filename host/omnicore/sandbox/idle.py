"""The idle reaper: frees plugin instances no call has used for ``limits.idle_timeout_ms``.

An idle plugin then holds no instance at all (its linear memory, store and tables go), only
its compiled code, shared with every other plugin of the same bytes; its next call starts a
fresh instance. One reaper per engine, one daemon thread that wakes every ``period_s`` and
sweeps every pool it watches (:meth:`InstancePool.sweep <omnicore.sandbox.pool.InstancePool.
sweep>`). The clock is an attribute so tests move time themselves instead of sleeping.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from omnicore.core.background import Background
from omnicore.sandbox.pool import InstancePool

__all__ = ["IdleReaper"]

_log = logging.getLogger("omnicore.sandbox")


class IdleReaper:
    """Sweeps the instance pools it watches against :attr:`clock`."""

    def __init__(self, clock: Callable[[], float] = time.monotonic,
                 period_s: float = 1.0) -> None:
        #: Seconds, monotonic; replace it to drive the reaper from a test.
        self.clock = clock
        self.period_s = period_s
        self._pools: weakref.WeakSet[InstancePool[Any]] = weakref.WeakSet()
        self._lock = threading.Lock()
        #: Started by the first pool that needs it: an engine of per-call or keep-forever
        #: plugins never runs the thread.
        self._sweeping = Background("omnicore-idle", once=True)

    def watch(self, pool: InstancePool[Any]) -> None:
        """Sweep ``pool`` from now on (until it is closed or collected)."""
        if pool.idle_s is None:
            return
        with self._lock:
            self._pools.add(pool)
        self._sweeping.start(self._run)

    def sweep(self, now: float | None = None) -> int:
        """Sweep every watched pool at ``now`` (default :attr:`clock`); return how many
        instances were freed."""
        now = self.clock() if now is None else now
        with self._lock:
            pools = list(self._pools)
        freed = 0
        for pool in pools:
            freed += pool.sweep(now)
        with self._lock:
            for pool in pools:
                if pool.closed:
                    self._pools.discard(pool)
        return freed

    def _run(self) -> None:
        while not self._sweeping.stopping.wait(self.period_s):
            try:
                self.sweep()
            except Exception:  # one bad instance must not end sweeping for every plugin
                _log.exception("omnicore: sweeping idle plugin instances failed")

    def close(self) -> None:
        """Stop the thread (pools are not touched)."""
        self._sweeping.stop(1)
