"""The Events page's Bridges table in Chromium: a Redis bridge that is up (its entries counted
as received and acknowledged, an event published) beside an MQTT bridge whose broker is not
there (down, its reason shown), at a 390 px phone and a 1366 px desktop, the table fitting its
card. Screenshots: build/console-screenshots/4-{phone,desktop}-events-bridges.png."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from omnicore import OmniApp
from omnicore.accounts.audit import Actor
from omnicore.console import ConsoleModule
from omnicore.console.events import publish
from tests.browsers import SHOTS, off_thread
from tests.console.test_browser_live import sign_in
from tests.dbservers import Redis, free_port
from tests.waiting import eventually

PASSWORD = "lovelace-1815"


@pytest.fixture
def bridged(tmp_path: Path) -> Iterator[tuple[OmniApp, ConsoleModule, Redis]]:
    redis = Redis.start()
    redis.client().xgroup_create("orders", "omnicore-orders", "$", mkstream=True)
    (tmp_path / "plugins").mkdir()
    app = OmniApp("browser-bridges", environ={}, entry_points=False, overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(tmp_path / "plugins"),
        "console": {"port": 0},
        "bridges": {
            "orders": {"kind": "redis", "url": f"redis://127.0.0.1:{redis.port}/0",
                       "secret": "redis-password",
                       "inbound": [{"stream": "orders", "event": "orders.created"}],
                       "outbound": [{"events": ["shop.*"], "stream": "shop-out"}]},
            "ledger": {"kind": "mqtt", "url": f"mqtt://omnicore@127.0.0.1:{free_port()}",
                       "inbound": [{"topic": "ledger/#", "event": "ledger.entry"}]}}})
    module = ConsoleModule()
    app.add_module(module)
    app.secrets.set("redis-password", redis.password)
    off_thread(app.start)
    try:
        assert module.console is not None
        module.console.auth.store.add("ada", PASSWORD, "admin")
        yield app, module, redis
    finally:
        off_thread(app.stop)
        redis.stop()


def test_the_bridges_table_shows_state_lag_and_counters_on_a_phone_and_a_desktop(
        browser: Browser, bridged: tuple[OmniApp, ConsoleModule, Redis]) -> None:
    app, module, redis = bridged
    assert module.url is not None
    for n in range(5):
        redis.client().xadd("orders", {"data": json.dumps({"order": n})})
    publish(app, "shop.shipped", b'{"order": 1}', Actor("ada", "test"))

    def status() -> dict[str, dict[str, object]]:
        return {s["name"]: s for s in app.bridges.status()}

    eventually(lambda: status()["orders"]["acked"] == 5 and status()["orders"]["published"] == 1
               and status()["ledger"]["state"] == "down", "counted, and ledger down")
    reason = str(status()["ledger"]["reason"])
    for (width, height), name in (((390, 844), "phone"), ((1366, 900), "desktop")):
        context = browser.new_context(viewport={"width": width, "height": height})
        try:
            page = context.new_page()
            sign_in(page, module.url)
            page.goto(f"{module.url}/events")
            table = page.locator("#bridges")
            orders = table.locator('tr[data-bridge="orders"]')
            expect(orders.locator("[data-state]")).to_have_text("up")
            expect(orders.locator('td[data-label="Received"]')).to_have_text("5")
            expect(orders.locator('td[data-label="Acked"]')).to_have_text("5")
            expect(orders.locator('td[data-label="Published"]')).to_have_text("1")
            expect(orders.locator('td[data-label="Lag in / out"]')).to_have_text("0 / 0")
            expect(orders).to_contain_text("in: orders → orders.created")
            expect(orders).to_contain_text("out: shop.* → shop-out")
            ledger = table.locator('tr[data-bridge="ledger"]')
            expect(ledger.locator("[data-state]")).to_have_text("down")
            expect(ledger.locator(".bridge-reason")).to_contain_text(reason.split(":")[0])
            fit = table.evaluate(
                "t => [t.scrollWidth, t.parentElement.clientWidth,"
                " t.getBoundingClientRect().right,"
                " t.parentElement.getBoundingClientRect().right]")
            assert fit[0] <= fit[1] and fit[2] <= fit[3] + 0.5, (name, fit)
            page_width = page.evaluate("document.documentElement.scrollWidth")
            assert page_width <= width, (name, page_width)
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.locator("#bridges-card").screenshot(
                path=str(SHOTS / f"4-{name}-events-bridges.png"))
            assert redis.password not in page.content()
        finally:
            context.close()
