"""The charts' data: recent history of the host and of each plugin, in bounded memory.

The console samples every ``period_s`` (10 s): each plugin's calls and errors since the last
sample, its p50/p99 over its latest calls (exact durations, :mod:`omnicore.plugins.stats`),
the memory its live instances hold and the fuel its calls burnt since the last sample (NaN
when its calls are not metered; :mod:`omnicore.sandbox.usage`), and the host's jobs finished,
jobs queued, events delivered and events dropped. Each sample is added to three rings of
fixed size, one per time range (15 min in 10 s steps, 1 h in 1 min steps, 24 h in 10 min
steps): counts and fuel add up within a step, p50 keeps the step's last value, p99 and
memory their highest. A ring row is six float32 values and a step number: 294 rows, 9.2 KiB
a plugin, whatever the traffic (:meth:`Series.nbytes`).
"""

from __future__ import annotations

import math
import time
from array import array
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["CALLS", "HOST", "RANGES", "Ring", "Series"]

#: name -> (step seconds, steps kept)
RANGES: dict[str, tuple[int, int]] = {"15m": (10, 90), "1h": (60, 60), "24h": (600, 144)}
HOST = ""  # the host's own rows, beside the plugins' names
CALLS = "*"  # every plugin's calls and errors added up (the overview's chart)
WIDTH = 6
#: How each column combines within a step: add (counts), last, max.
#: calls, p50 s, p99 s, errors, instance memory bytes, fuel burnt (NaN: not metered)
PLUGIN_COLUMNS = ("add", "last", "max", "add", "max", "add")
#: jobs done, jobs queued, events delivered, events dropped (the last two columns unused)
HOST_COLUMNS = ("add", "last", "add", "add", "add", "add")


class Ring:
    """``size`` steps of ``step`` seconds, :data:`WIDTH` values a step."""

    __slots__ = ("ids", "size", "step", "values")

    def __init__(self, step: int, size: int) -> None:
        self.step, self.size = step, size
        self.values = array("f", bytes(4 * WIDTH * size))
        self.ids = array("q", [-1] * size)

    def add(self, t: float, row: tuple[float, ...], how: tuple[str, ...]) -> None:
        if len(row) != WIDTH:  # a shorter row would shrink the array under every slot after
            raise ValueError(f"a ring row has {WIDTH} values, not {len(row)}")
        step = int(t // self.step)
        slot = step % self.size
        base = slot * WIDTH
        if self.ids[slot] != step:
            self.ids[slot] = step
            self.values[base:base + WIDTH] = array("f", row)
            return
        for i, (value, rule) in enumerate(zip(row, how, strict=True)):
            old = self.values[base + i]
            if math.isnan(old) or rule == "last":  # NaN: nothing measured earlier this step
                merged = value
            else:
                merged = old + value if rule == "add" else max(old, value)
            self.values[base + i] = merged

    def points(self, now: float) -> list[tuple[float, tuple[float, ...] | None]]:
        """Oldest first: each step's start time and its values (None: no sample then)."""
        last = int(now // self.step)
        out: list[tuple[float, tuple[float, ...] | None]] = []
        for step in range(last - self.size + 1, last + 1):
            slot = step % self.size
            base = slot * WIDTH
            out.append((step * self.step, tuple(self.values[base:base + WIDTH])
                        if self.ids[slot] == step else None))
        return out

    @property
    def nbytes(self) -> int:
        return self.values.itemsize * len(self.values) + self.ids.itemsize * len(self.ids)


class Series:
    """Every plugin's rings and the host's, fed by :meth:`sample`."""

    def __init__(self, period_s: float = 10.0) -> None:
        self.period_s = period_s
        self._rings: dict[str, dict[str, Ring]] = {}
        self._last: dict[str, tuple[float, ...]] = {}
        #: Samples taken so far: pages showing charts fetch themselves again when it moves.
        self.samples = 0
        #: Each plugin's instance memory at the last sample (bytes), for the live figure.
        self.memory: dict[str, int] = {}

    def _add(self, key: str, t: float, row: tuple[float, ...], how: tuple[str, ...]) -> None:
        rings = self._rings.get(key)
        if rings is None:
            rings = self._rings[key] = {name: Ring(*spec) for name, spec in RANGES.items()}
        for ring in rings.values():
            ring.add(t, row, how)

    def _delta(self, key: str, totals: tuple[float, ...]) -> tuple[float, ...]:
        before = self._last.get(key)
        self._last[key] = totals
        if before is None:
            return tuple(0.0 for _ in totals)
        return tuple(max(now - old, 0.0) for now, old in zip(totals, before, strict=True))

    def sample(self, app: OmniApp, now: float | None = None) -> None:
        """Take one sample of everything (a plugin that left keeps its history until its
        rings are taken over by time)."""
        t = time.time() if now is None else now
        all_calls = all_errors = 0.0
        usage = dict(app.plugins.usage_items())
        self.memory = {name: u.memory_bytes for name, u in usage.items()}
        for name, stats in app.plugins.stats_items():
            snap = stats.snapshot()
            use = usage.get(name)
            fuel = use.fuel if use is not None else None
            calls, errors, burnt = self._delta(name, (snap.calls, snap.errors, fuel or 0))
            all_calls, all_errors = all_calls + calls, all_errors + errors
            self._add(name, t, (calls, snap.quantile(0.5), snap.quantile(0.99), errors,
                                float(use.memory_bytes) if use is not None else math.nan,
                                burnt if fuel is not None else math.nan), PLUGIN_COLUMNS)
        self._add(CALLS, t, (all_calls, 0.0, 0.0, all_errors, 0.0, 0.0), PLUGIN_COLUMNS)
        counts = app.jobs.counts()
        done = sum(n for (_p, state), n in counts.items() if state in ("succeeded", "dead"))
        queued = sum(n for (_p, state), n in counts.items() if state == "queued")
        subs = app.subscriptions.all()
        finished, delivered, dropped = self._delta(HOST, (
            done, sum(s.delivered + s.failed for s in subs), sum(s.dropped for s in subs)))
        self._add(HOST, t, (finished, queued, delivered, dropped, 0.0, 0.0), HOST_COLUMNS)
        self.samples += 1

    def points(self, key: str, span: str,
               now: float | None = None) -> list[tuple[float, tuple[float, ...] | None]]:
        """The steps of range ``span`` for a plugin (or :data:`HOST`); empty if never sampled."""
        rings = self._rings.get(key)
        if rings is None:
            return []
        return rings[span].points(time.time() if now is None else now)

    def nbytes(self) -> int:
        """The memory the rings hold (their arrays)."""
        return sum(r.nbytes for rings in self._rings.values() for r in rings.values())
