"""Instance memory and fuel on a plugin's page, in Debian's chromium: SVG charts with their
axis labels and units, redrawn live (no navigation) after an API call grows the plugin's
memory or burns fuel; the same charts as data from ``GET /api/v1/plugins/NAME/charts``."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from omnicore import OmniApp
from omnicore.console import ConsoleModule
from tests.browsers import SHOTS, off_thread
from tests.host_fixtures import grower_wasm
from tests.waiting import eventually

PASSWORD = "lovelace-1815"


@pytest.fixture
def grower(tmp_path: Path) -> Iterator[tuple[OmniApp, ConsoleModule, str]]:
    """A host with ``grower`` (metered: limits.fuel) and ``plain`` (the same module, not
    metered), sampled every half second; and an admin API token."""
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    wasm = grower_wasm()
    (plugins / "grower.wasm").write_bytes(wasm)
    (plugins / "grower.toml").write_text("[limits]\nfuel = 50000000\n")
    (plugins / "plain.wasm").write_bytes(wasm)
    app = OmniApp("usage-charts", environ={}, entry_points=False, overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(plugins),
        "console": {"port": 0}})
    module = ConsoleModule()
    app.add_module(module)
    off_thread(app.start)
    try:
        assert module.console is not None
        module.console.history.period_s = 0.5   # the sampler takes it from its next turn
        module.console.auth.store.add("ada", PASSWORD, "admin")
        token, _ = module.console.auth.store.new_token("ada", "tests")
        # A cold start serves Winch code, then swaps in Cranelift's as a reload does, with
        # fresh instances: a swap after the calls below grew memory showed 128 KiB again (a
        # loaded CI machine, once). The charts are the subject, so the swap is waited out.
        host = app.plugins
        eventually(lambda: not any(host._linker._tiers.is_baseline(
            host._entries.require(name).module) for name in ("grower", "plain")),
            "both plugins serving their optimized code")
        yield app, module, token
    finally:
        off_thread(app.stop)


def sign_in(page: Page, url: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=name]", "ada")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Overview")


def figure(page: Page, title: str) -> Locator:
    return page.locator("figure.chart-box", has=page.locator("figcaption b", has_text=title))


def mib(text: str) -> float:
    """``"3.12 MiB"`` / ``"128 KiB"`` in MiB."""
    number, unit = text.split()
    return float(number) / {"KiB": 1024, "MiB": 1, "GiB": 1 / 1024}[unit]


def test_memory_and_fuel_charts_move_live_after_calls(
        browser: Browser, grower: tuple[OmniApp, ConsoleModule, str]) -> None:
    _app, module, token = grower
    assert module.url is not None
    api = httpx.Client(base_url=module.url, timeout=30,
                       headers={"Authorization": f"Bearer {token}"})
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    try:
        sign_in(page, module.url)
        page.goto(f"{module.url}/plugins/grower?range=15m")
        expect(page.locator("#live-state")).to_have_text("live", timeout=30_000)
        memory = figure(page, "Instance memory")
        svg = memory.locator("svg.chart")
        expect(svg).to_have_attribute("aria-label", re.compile(r"Instance memory in \w+"))
        # The first samples show the instance's 128 KiB (two pages).
        expect(memory.locator(".legend")).to_contain_text("128 KiB", timeout=60_000)
        texts = svg.locator("text").all_text_contents()
        assert "time (local)" in texts and "KiB" in texts, texts     # both axes labelled
        assert any(re.fullmatch(r"\d\d:\d\d", t) for t in texts), texts
        figure_dd = page.locator('[data-live="plugin.grower.memory"]')
        expect(figure_dd).to_have_text("128 KiB", timeout=60_000)
        fuel = figure(page, "Fuel")
        fuel_texts = fuel.locator("svg.chart text").all_text_contents()
        assert "fuel/s" in fuel_texts and "time (local)" in fuel_texts, fuel_texts

        page.evaluate("window.__same_page = true")  # gone if the browser navigated
        for _ in range(3):
            r = api.post("/api/v1/plugins/grower/invoke", json={"handler": "grow", "input": ""})
            assert r.status_code == 200, r.text
        r = api.post("/api/v1/plugins/grower/invoke", json={"handler": "burn", "input": ""})
        assert r.status_code == 200, r.text

        # 128 KiB + 3 MiB, in the live figure and on the redrawn chart, in MiB now.
        expect(figure_dd).to_have_text("3.12 MiB", timeout=60_000)
        expect(memory.locator(".legend")).to_contain_text("MiB", timeout=60_000)
        assert "MiB" in memory.locator("svg.chart text").all_text_contents()
        legend = memory.locator(".legend .nowrap").inner_text()
        assert mib(legend) == pytest.approx(3.125, abs=0.01), legend
        # The legend shows the latest 10 s step: the burn above may have left it by now on a
        # loaded machine, so fuel keeps burning (a call a second) until the legend shows it.
        stop = threading.Event()

        def keep_burning() -> None:
            with httpx.Client(base_url=module.url, timeout=30,
                              headers={"Authorization": f"Bearer {token}"}) as burner:
                while not stop.is_set():
                    burner.post("/api/v1/plugins/grower/invoke",
                                json={"handler": "burn", "input": ""})
                    stop.wait(1.0)

        burning = threading.Thread(target=keep_burning, daemon=True)
        burning.start()
        try:
            expect(fuel.locator(".legend")).not_to_contain_text(" 0 fuel/s", timeout=60_000)
        finally:
            stop.set()
            burning.join(60)
        assert page.evaluate("window.__same_page") is True
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.locator("#charts").screenshot(path=str(SHOTS / "plugin-usage-charts-1366.png"))

        # The same charts as data.
        doc = api.get("/api/v1/plugins/grower/charts", params={"range": "15m"}).json()
        by_title = {c["title"]: c for c in doc["charts"]}
        assert doc["range"] == "15m" and doc["step_s"] == 10
        assert set(by_title) == {"Calls", "Latency", "Instance memory", "Fuel"}
        mem = by_title["Instance memory"]
        assert mem["unit"] == "MiB"
        peak = max(v for _t, v in mem["lines"][0]["points"] if v is not None)
        assert peak == pytest.approx(3.125, abs=0.01)
        burnt = [v for _t, v in by_title["Fuel"]["lines"][0]["points"] if v]
        assert burnt and by_title["Fuel"]["note"] is None

        # Not metered: the chart says so, and its API twin too.
        page.goto(f"{module.url}/plugins/plain?range=15m")
        expect(figure(page, "Fuel")).to_contain_text("not metered")
        plain = api.get("/api/v1/plugins/plain/charts").json()
        fuel_doc = next(c for c in plain["charts"] if c["title"] == "Fuel")
        assert "limits.fuel" in fuel_doc["note"]
        assert all(v is None for _t, v in fuel_doc["lines"][0]["points"])
        assert api.get("/api/v1/plugins/ghost/charts").status_code == 404
        assert api.get("/api/v1/plugins/grower/charts",
                       params={"range": "1y"}).json()["range"] == "1h"

        page.set_viewport_size({"width": 390, "height": 844})
        page.goto(f"{module.url}/plugins/grower?range=15m")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        page.screenshot(path=str(SHOTS / "plugin-usage-390.png"), full_page=True)
    finally:
        context.close()
        api.close()
