"""Charts as SVG geometry: lines over time with a labelled time axis and value axis.

:func:`chart` turns the steps of a :mod:`omnicore.console.series` range into what the
``_chart.html`` macro draws: one path a line (a gap where there was no sample), the value
axis from 0 to a round maximum with its unit, and the time axis with clock times.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from omnicore.console.series import CALLS, HOST, RANGES, Series

__all__ = ["Chart", "Line", "byte_unit", "chart", "host_charts", "plugin_charts", "size_text",
           "span_of"]

WIDTH, HEIGHT = 420, 150
LEFT, RIGHT, TOP, BOTTOM = 46, 8, 10, 30


@dataclass(frozen=True)
class Line:
    label: str
    css: str
    path: str
    last: str


@dataclass(frozen=True)
class Chart:
    title: str
    unit: str
    lines: list[Line]
    y_ticks: list[tuple[float, str]]
    x_ticks: list[tuple[float, str]]
    empty: bool
    width: int = WIDTH
    height: int = HEIGHT
    box: tuple[int, int, int, int] = field(default=(LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM))
    #: Each line's values in ``unit`` by step start (unix seconds); None: no sample.
    data: dict[str, list[tuple[float, float | None]]] = field(default_factory=dict)
    #: Why the chart has nothing to show, when it cannot have (fuel not metered).
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        """The chart as the API gives it: title, unit, each line's points."""
        return {"title": self.title, "unit": self.unit, "note": self.note or None,
                "lines": [{"label": line.label, "last": line.last,
                           "points": [[t, v] for t, v in self.data[line.label]]}
                          for line in self.lines]}


def _nice(top: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times 10^n at or above ``top``."""
    if top <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(top))
    return float(next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= top * 0.999999))


def _num(v: float) -> str:
    if v == 0:
        return "0"
    if v >= 100:
        return f"{v:,.0f}"
    return f"{v:.3g}"


def _tick(v: float) -> str:
    """A value-axis label short enough for the margin: 250k, 1.5M."""
    if v >= 1e4:
        size, suffix = next((s, x) for s, x in ((1e9, "G"), (1e6, "M"), (1e3, "k")) if v >= s)
        return f"{v / size:.3g}{suffix}"
    return _num(v)


def chart(title: str, unit: str, points: Sequence[tuple[float, tuple[float, ...] | None]],
          lines: Sequence[tuple[str, str, Callable[[tuple[float, ...]], float]]]) -> Chart:
    """``lines``: (label, css class, the value of a step's row in ``unit``)."""
    x0, y0, x1, y1 = LEFT, TOP, WIDTH - RIGHT, HEIGHT - BOTTOM
    n = len(points)
    values = [[None if row is None else _value(fn(row)) for _t, row in points]
              for _l, _c, fn in lines]
    seen = [v for series in values for v in series if v is not None]
    top = _nice(max(seen, default=0.0))

    def x(i: int) -> float:
        return x0 + (x1 - x0) * (i / max(n - 1, 1))

    def y(v: float) -> float:
        return y1 - (y1 - y0) * (v / top)

    drawn = []
    for (label, css, _fn), series in zip(lines, values, strict=True):
        parts, pen = [], "M"
        for i, v in enumerate(series):
            if v is None:
                pen = "M"
                continue
            parts.append(f"{pen}{x(i):.1f},{y(v):.1f}")
            alone = pen == "M" and (i + 1 == n or series[i + 1] is None)
            if alone:  # a step between gaps (or the first sample): a dot, round-capped
                parts.append("h0.01")
            pen = "L"
        last = next((v for v in reversed(series) if v is not None), None)
        drawn.append(Line(label, css, " ".join(parts),
                          "-" if last is None else f"{_num(last)} {unit}"))
    y_ticks = [(y(top * f), _tick(top * f)) for f in (0, 0.5, 1)]
    x_ticks = []
    if n:
        for i in sorted({0, n // 2, n - 1}):
            x_ticks.append((x(i), time.strftime("%H:%M", time.localtime(points[i][0]))))
    data = {label: [(t, v) for (t, _row), v in zip(points, series, strict=True)]
            for (label, _c, _fn), series in zip(lines, values, strict=True)}
    return Chart(title, unit, drawn, y_ticks, x_ticks, not seen, data=data)


def _value(v: float) -> float | None:
    return None if math.isnan(v) else v


def host_charts(series: Series, span: str) -> list[Chart]:
    """The overview's: calls and errors, jobs, events."""
    step = RANGES[span][0]
    calls, host = series.points(CALLS, span), series.points(HOST, span)
    return [
        chart("Calls", "calls/s", calls, [("calls", "calls", lambda r: r[0] / step),
                                          ("errors", "errors", lambda r: r[3] / step)]),
        chart("Jobs finished", "jobs/min", host, [("finished", "calls",
                                                   lambda r: r[0] * 60 / step)]),
        chart("Jobs queued", "jobs", host, [("queued", "queued", lambda r: r[1])]),
        chart("Events", "events/s", host, [("delivered", "calls", lambda r: r[2] / step),
                                           ("dropped", "errors", lambda r: r[3] / step)]),
    ]


#: Byte units, largest first: a memory chart is drawn in the largest its peak reaches.
BYTE_UNITS = (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10), ("bytes", 1))


def byte_unit(peak: float) -> tuple[str, int]:
    """The unit (and its size) to show ``peak`` bytes in."""
    return next(((u, n) for u, n in BYTE_UNITS if peak >= n), BYTE_UNITS[-1])


def size_text(n: float | None) -> str:
    """``n`` bytes as the plugin page shows them (``1.5 MiB``); ``-`` when not measured."""
    if n is None:
        return "-"
    unit, size = byte_unit(n)
    return f"{n / size:.3g} {unit}" if size > 1 else f"{n:.0f} bytes"


def plugin_charts(series: Series, name: str, span: str, *,
                  metered: bool = False) -> list[Chart]:
    """A plugin's page: its calls and errors, its latency percentiles, the memory its live
    instances hold and, where its calls are metered (``metered``), the fuel they burn."""
    step = RANGES[span][0]
    points = series.points(name, span)
    peak = max((row[4] for _t, row in points if row is not None and not math.isnan(row[4])),
               default=0.0)
    unit, size = byte_unit(peak)
    fuel = chart("Fuel", "fuel/s", points, [("fuel", "calls", lambda r: r[5] / step)])
    if not metered:
        fuel = replace(fuel, note="not metered: set limits.fuel to meter this plugin's calls")
    return [
        chart("Calls", "calls/s", points, [("calls", "calls", lambda r: r[0] / step),
                                           ("errors", "errors", lambda r: r[3] / step)]),
        chart("Latency", "ms", points, [("p50", "calls", lambda r: r[1] * 1000),
                                        ("p99", "queued", lambda r: r[2] * 1000)]),
        chart("Instance memory", unit, points, [("memory", "calls", lambda r: r[4] / size)]),
        fuel,
    ]


def span_of(raw: str | None, uptime_s: float | None = None) -> str:
    """The time range asked for (15m, 1h or 24h). Otherwise 1h, or 15m while the host is up
    for less than 15 minutes (a page's default, ``uptime_s`` given): its history is no older
    than its start, and a quarter hour of it is a sliver at the right edge of an hour."""
    if raw in RANGES:
        return raw
    return "15m" if uptime_s is not None and uptime_s < RANGES["15m"][0] * RANGES["15m"][1] \
        else "1h"
