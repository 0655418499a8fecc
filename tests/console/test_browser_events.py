"""The Events page's Topics and Recent events tables in Chromium: at a 390 px phone and a
1366 px desktop each fits its card (no column clipped, nothing scrolls sideways), long topics
and subscriber names wrapping. Screenshots:
build/console-screenshots/4-{phone,desktop}-events-topics.png."""

from __future__ import annotations

from playwright.sync_api import Browser, expect

from omnicore import OmniApp
from omnicore.accounts.audit import Actor
from omnicore.console import ConsoleModule
from omnicore.console.events import publish
from tests.browsers import SHOTS
from tests.console.test_browser_live import full, sign_in  # noqa: F401

TOPICS = ("shop.order_created_in_the_north_warehouse_for_a_returning_customer",
          "shop.refund", "plugin.ticker.a-rather-long-topic-name-without-any-natural-break")


def test_the_topics_table_fits_its_card_on_a_phone_and_a_desktop(
        browser: Browser, full: tuple[OmniApp, ConsoleModule]) -> None:  # noqa: F811
    app, module = full
    assert module.url is not None
    for topic in TOPICS:
        publish(app, topic, b'{"n": 1}', Actor("ada", "test"))
    for (width, height), name in (((390, 844), "phone"), ((1366, 900), "desktop")):
        context = browser.new_context(viewport={"width": width, "height": height})
        try:
            page = context.new_page()
            sign_in(page, module.url)
            page.goto(f"{module.url}/events")
            table = page.locator("#topics")
            expect(table).to_contain_text(TOPICS[0])
            expect(table).to_contain_text("ticker.on_event")  # the subscribers column
            for which in ("#topics", "#recent-events"):
                fit = page.locator(which).evaluate(
                    "t => [t.scrollWidth, t.parentElement.clientWidth,"
                    " t.getBoundingClientRect().right,"
                    " t.parentElement.getBoundingClientRect().right]")
                assert fit[0] <= fit[1] and fit[2] <= fit[3] + 0.5, (name, which, fit)
            page_width = page.evaluate("document.documentElement.scrollWidth")
            assert page_width <= width, (name, page_width)
            SHOTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(SHOTS / f"4-{name}-events-topics.png"), full_page=True)
        finally:
            context.close()
