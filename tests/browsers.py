"""One way to start a browser: Debian's chromium through Playwright, headless, one per test
module (``browser``), and the two habits of the tests that drive it — a blocking app call off
Playwright's thread (``off_thread``) and a screenshot to look at (``shot``, into SHOTS)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "build" / "console-screenshots"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """A headless chromium for the module's tests (each opens its own pages)."""
    # Imported here: a run without browser tests (--fast) does not load Playwright.
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def off_thread(fn: Callable[[], None]) -> None:
    """Run ``fn`` on a helper thread and re-raise what it raised: Playwright's sync API keeps
    an event loop running in the test's thread, and an app's blocking start/stop refuse to
    run inside one."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as exc:  # re-raised below, in the test's thread
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if errors:
        raise errors[0]


def shot(page: Page, name: str) -> None:
    """A full-page screenshot, ``SHOTS/<name>.png``."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
