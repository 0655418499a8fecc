"""``ChartSampler``: the app module that feeds the charts' history (:class:`Series`).

Every ``series.period_s`` it takes one sample of the app (plugins' calls, latencies, memory
and fuel; jobs finished and queued; events delivered and dropped). The console adds it when
it is added (and depends on it), so the app's lifecycle starts it before the console and stops
it after. A storage failure during a sample (a locked, damaged or full database) costs that
sample only: it is logged once, and sampling goes on, saying so when a sample works again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, cast

from omnicore.console.series import Series
from omnicore.core.module import Module
from omnicore.storage import StorageError

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["ChartSampler"]


class ChartSampler(Module):
    """Samples the app into :attr:`series` every ``series.period_s`` while the app runs."""

    name = "charts"
    #: The app's services a sample reads: when the app runs one as a module, it starts first.
    READS = ("plugins", "jobs", "subscriptions")

    def __init__(self, series: Series | None = None) -> None:
        super().__init__()
        self.series = series or Series()
        self._task: asyncio.Task[None] | None = None
        self._failing = False

    @property
    def depends_on(self) -> Sequence[str]:
        """Those of :attr:`READS` the app runs as modules (asked when the app starts)."""
        if self._app is None:
            return ()
        present = {m.name for m in self._app.modules}
        return tuple(name for name in self.READS if name in present)

    @depends_on.setter
    def depends_on(self, _value: Sequence[str]) -> None:
        raise AttributeError("ChartSampler's dependencies are what it reads (READS)")

    def tick(self, now: float | None = None) -> bool:
        """Take one sample (at ``now``); False when the storage failed it."""
        try:
            self.series.sample(cast("OmniApp", self.app), now)
        except StorageError as exc:
            if not self._failing:
                self._failing = True
                self.log.warning("charts: a sample failed: %s; sampling goes on (not logged "
                                 "again until a sample works)", exc)
            return False
        if self._failing:
            self._failing = False
            self.log.info("charts: sampling works again")
        return True

    async def _run(self) -> None:
        while True:
            self.tick()
            # Read every turn: the period may be changed while it runs.
            await asyncio.sleep(self.series.period_s)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
