"""The charts' history (bounded rings at three resolutions) and their SVG: axes with units,
gaps where there was no sample, percentiles from real durations."""

from __future__ import annotations

import math
import re

import httpx

from omnicore.console.charts import chart, host_charts
from omnicore.console.series import CALLS, HOST, RANGES, Ring
from tests.console.conftest import Host


def test_a_ring_combines_within_a_step_and_forgets_past_its_size() -> None:
    ring = Ring(10, 3)
    how = ("add", "last", "max", "add", "max", "add")
    nan = math.nan
    ring.add(100.0, (1, 0.5, 0.5, 0, 100, nan), how)
    ring.add(105.0, (2, 0.25, 0.75, 1, 50, 7), how)   # fuel: NaN (not metered) then metered
    ring.add(120.0, (4, 0.1, 0.1, 0, 10, 1), how)
    points = ring.points(125.0)
    assert [t for t, _ in points] == [100, 110, 120]
    assert points[0][1] == (3.0, 0.25, 0.75, 1.0, 100.0, 7.0) and points[1][1] is None
    assert points[2][1] is not None and points[2][1][0] == 4.0
    assert ring.points(150.0)[0] == (130, None)  # older than the ring: gone, not wrapped in
    ring.add(150.0, (9, 0, 0, 0, 0, 0), how)  # lands in the slot step 12 had: replaced
    assert [r for _t, r in ring.points(150.0) if r] == [(9.0, 0.0, 0.0, 0.0, 0.0, 0.0)]


def test_memory_is_fixed_per_plugin_whatever_the_traffic() -> None:
    one = sum(size for _step, size in RANGES.values())
    ring_bytes = sum(Ring(*spec).nbytes for spec in RANGES.values())
    assert ring_bytes == one * (6 * 4 + 8) and ring_bytes < 10 * 1024


def test_the_svg_has_labelled_axes_units_and_gaps() -> None:
    points = [(600.0 * i, None if i == 2 else (float(i), 0.0, 0.0, 0.0, 0.0, 0.0))
              for i in range(5)]
    c = chart("Calls", "calls/s", points, [("calls", "calls", lambda r: r[0])])
    assert [label for _y, label in c.y_ticks] == ["0", "2.5", "5"]  # a round top
    assert len(c.x_ticks) == 3 and all(re.fullmatch(r"\d\d:\d\d", t) for _x, t in c.x_ticks)
    assert c.lines[0].path.count("M") == 2  # the missing step breaks the line
    assert c.lines[0].last == "4 calls/s" and not c.empty


def test_large_values_get_short_axis_labels_that_match_them_and_lone_samples_show() -> None:
    points = [(10.0 * i, None if i != 3 else (0.0, 0.0, 0.0, 0.0, 0.0, 600_060.0))
              for i in range(6)]
    c = chart("Fuel", "fuel/s", points, [("fuel", "calls", lambda r: r[5] / 10)])
    assert [label for _y, label in c.y_ticks] == ["0", "50k", "100k"]
    assert c.lines[0].last == "60,006 fuel/s"
    assert c.lines[0].path.endswith("h0.01")  # one sample between gaps: drawn as a dot
    nan = chart("Fuel", "fuel/s", [(0.0, (0.0, 0.0, 0.0, 0.0, 0.0, math.nan))],
                [("fuel", "calls", lambda r: r[5])])
    assert nan.empty and nan.data == {"fuel": [(0.0, None)]}   # not metered: no value


def test_the_overview_and_plugin_page_draw_the_series(host: Host, admin: httpx.Client) -> None:
    host.app.plugins.grant("greeter-rust", "config", {})
    st = host.module.console
    assert st is not None
    st.history.sample(host.app, now=1000.0)
    for _ in range(6):
        host.app.plugins.call("greeter-rust", "greet", b'{"name": "x"}')
    st.history.sample(host.app, now=1010.0)
    calls = st.history.points(CALLS, "15m", now=1015.0)
    assert calls[-1][1] is not None and calls[-1][1][0] == 6.0
    row = st.history.points("greeter-rust", "15m", now=1015.0)[-1][1]
    snap = host.app.plugins.get("greeter-rust").stats
    assert row is not None and snap is not None
    assert abs(row[2] - snap.quantile(0.99)) < 1e-6  # the stats' exact p99 (float32)
    assert host_charts(st.history, "15m")[0].unit == "calls/s"
    assert st.history.points(HOST, "24h", now=1015.0)[-1][1] is not None

    browser, _ = host.browser_session()
    for url in ("/?range=15m", "/plugins/greeter-rust?range=24h"):
        page = browser.get(url).text
        svgs = re.findall(r'<svg class="chart".*?</svg>', page, re.S)
        assert svgs, url
        for svg in svgs:
            texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
            units = ("/s", "/min", "ms", "jobs", "bytes", "iB")
            assert "time (local)" in texts and any(t.endswith(units) for t in texts), texts
    assert 'aria-current="true">24h<' in browser.get("/plugins/greeter-rust?range=24h").text
    doc = admin.get("/api/v1/plugins/greeter-rust").json()
    assert doc["stats"]["p50_us"] <= doc["stats"]["p99_us"] and doc["stats"]["p50_us"] > 0


def test_a_new_host_charts_its_quarter_hour_by_default(host: Host) -> None:
    from omnicore.console.charts import span_of

    browser, _ = host.browser_session()
    for url in ("/", "/plugins/greeter-rust"):  # a host up for seconds: its data fills 15m
        assert 'aria-current="true">15m<' in browser.get(url).text, url
    assert 'aria-current="true">1h<' in browser.get("/?range=1h").text  # asked: kept
    assert span_of(None, 15 * 60) == span_of("bogus", 7200.0) == "1h"  # up long enough
    assert span_of(None, 899.0) == "15m" and span_of(None) == "1h"  # the API's default
    assert span_of("24h", 5.0) == "24h"
