"""The second pass in a real browser (Debian's chromium through Playwright): the open overview
counts a call made through the API within 5 s without navigation; a grant made in the page
shows in the Audit page with the user, plugin and capability; every page fits a 390 px phone
(no sideways scroll) and a 1366 px desktop, with screenshots of both under
build/console-screenshots/."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from omnicore import OmniApp
from omnicore.console import ConsoleModule
from tests.browsers import off_thread, shot
from tests.console.test_browser import WORKFLOW
from tests.console.test_jobs import ticker_wasm
from tests.waiting import eventually

PASSWORD = "lovelace-1815"
GATED = """\
format: omniflow/v1
name: gated
steps:
  - {id: greet, uses: plugin:greeter-rust/greet, with: {name: Ada}}
  - {id: ok, needs: [greet], wait: {approval: {message: "Ship it?"}}}
"""


@pytest.fixture
def full(tmp_path: Path, greeter_wasm: Path) -> Iterator[tuple[OmniApp, ConsoleModule]]:
    """A host with the greeter (needing its config grant), a plugin that schedules and
    subscribes, a workflow and one run of it."""
    for folder in ("plugins", "workflows"):
        (tmp_path / folder).mkdir()
    shutil.copy(greeter_wasm, tmp_path / "plugins" / "greeter-rust.wasm")
    (tmp_path / "plugins" / "ticker.wasm").write_bytes(ticker_wasm())
    (tmp_path / "plugins" / "ticker.toml").write_text('grants = ["kv", "tasks", "events"]\n')
    (tmp_path / "workflows" / "welcome.yaml").write_text(WORKFLOW)
    (tmp_path / "workflows" / "gated.yaml").write_text(GATED)
    app = OmniApp("browser-live", environ={}, entry_points=False, overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(tmp_path / "plugins"),
        "console": {"port": 0}, "workflows": {"dir": str(tmp_path / "workflows"),
                                              "poll_s": 0.1}})
    module = ConsoleModule()
    app.add_module(module)
    off_thread(app.start)
    try:
        assert module.console is not None
        module.console.auth.store.add("ada", PASSWORD, "admin")
        yield app, module
    finally:
        off_thread(app.stop)


def sign_in(page: Page, url: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=name]", "ada")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Overview")


def test_overview_counts_an_api_call_live_and_a_grant_is_audited(
        browser: Browser, full: tuple[OmniApp, ConsoleModule]) -> None:
    _app, module = full
    assert module.console is not None and module.url is not None
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    sign_in(page, module.url)
    expect(page.locator("#live-state")).to_have_text("live", timeout=10_000)
    calls = page.locator("[data-live=calls]")
    before = int(calls.inner_text())

    # Grant config in the plugin's page, so the greeter can be called.
    page.goto(f"{module.url}/plugins/greeter-rust")
    page.select_option("#grant-form select[name=capability]", "config")
    page.click("#grant-form button")
    expect(page.locator("#plugin-state")).to_have_text("loaded")

    page.goto(f"{module.url}/")
    expect(page.locator("#live-state")).to_have_text("live", timeout=10_000)
    token, _ = module.console.auth.store.new_token("ada", "live-test")
    with httpx.Client(base_url=module.url, headers={"Authorization": f"Bearer {token}"},
                      timeout=30) as api:
        r = api.post("/api/v1/plugins/greeter-rust/invoke",
                     json={"handler": "greet", "input": '{"name": "Ada"}'})
        assert r.status_code == 200, r.text
    clicked = time.monotonic()
    expect(calls).to_have_text(str(before + 1), timeout=5_000)
    assert time.monotonic() - clicked < 5.5
    assert page.url.rstrip("/") == module.url  # no navigation happened

    page.click("nav >> text=Audit")
    row = page.locator("#audit tbody tr").filter(has_text="grant.add")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("ada")
    expect(row.locator("td[data-label=Plugin]")).to_have_text("greeter-rust")
    expect(row.locator("td[data-label='Capability / key']")).to_have_text("config")
    context.close()


def test_a_run_view_moves_as_its_steps_do(browser: Browser,
                                          full: tuple[OmniApp, ConsoleModule]) -> None:
    app, module = full
    assert module.console is not None and module.url is not None
    app.plugins.grant("greeter-rust", "config", {})
    run = app.workflows.start("gated", {}, started_by="test")
    eventually(lambda: app.workflows.get_run(run.id).state == "running" and any(
        s.state == "waiting" for s in app.workflows.steps(run.id)), "the run at its approval")
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    sign_in(page, module.url)
    page.goto(f"{module.url}/workflows/runs/{run.id}")
    expect(page.locator("#approval-state")).to_have_text("waiting for approval")
    expect(page.locator("#live-state")).to_have_text("live", timeout=10_000)
    app.workflows.approve(run.id, "ok", "someone-else", approve=True, comment="")
    expect(page.locator("#run-state")).to_have_text("succeeded", timeout=10_000)
    expect(page.locator("#approval-state")).to_have_count(0)
    assert page.url.endswith(f"/workflows/runs/{run.id}")
    page.goto(f"{module.url}/workflows/gated")  # the definition as written, not re-sorted
    expect(page.locator("#definition")).to_have_text(GATED.rstrip("\n"))
    context.close()


#: Counts the console's live streams in the page, opened and failed (its EventSource, wrapped
#: before the console's script runs).
_COUNT_STREAMS = """
window.__live = {opened: 0, failed: 0};
const Native = window.EventSource;
window.EventSource = class extends Native {
  constructor(...args) {
    super(...args);
    window.__live.opened++;
    this.addEventListener("error", () => window.__live.failed++);
  }
};
"""


def test_a_lost_stream_says_reconnecting_and_comes_back(
        browser: Browser, full: tuple[OmniApp, ConsoleModule]) -> None:
    _app, module = full
    assert module.url is not None
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    sign_in(page, module.url)
    page.add_init_script(_COUNT_STREAMS)
    # The page's timers run on a clock the test moves: a retry is due at its delay, not when
    # a loaded machine gets round to it (wall-clock intervals failed on a loaded CI run).
    page.clock.install()
    page.clock.pause_at(time.time() + 3600)
    page.route("**/api/v1/live*", lambda route: route.abort())
    page.goto(f"{module.url}/tasks")
    state = page.locator("#live-state")
    expect(state).to_have_text("reconnecting…")

    def streams() -> list[int]:
        # (page.evaluate, not wait_for_function: the console's CSP refuses the string eval
        # Playwright's polling would run)
        live: list[int] = page.evaluate("[window.__live.opened, window.__live.failed]")
        return live

    for tries, delay_ms in enumerate((1000, 2000, 4000), start=1):  # backing off
        eventually(lambda tries=tries: streams()[1] == tries, f"failed stream {tries}")
        page.clock.run_for(delay_ms - 1)
        assert streams() == [tries, tries], delay_ms  # not yet
        page.clock.run_for(1)
        assert streams()[0] == tries + 1, delay_ms
    eventually(lambda: streams()[1] == 4, "failed stream 4")
    expect(state).to_have_text("reconnecting…")
    page.unroute("**/api/v1/live*")
    page.clock.run_for(8000)  # the next try gets in
    expect(state).to_have_text("live")
    assert streams() == [5, 4]
    context.close()


PAGES = (("/", "overview"), ("/plugins", "plugins"), ("/plugins/greeter-rust", "plugin"),
         ("/plugins/ticker", "plugin-ticker"), ("/logs", "logs"), ("/tasks", "tasks"),
         ("/events", "events"), ("/workflows", "workflows"), ("/workflows/welcome", "workflow"),
         ("/workflows/runs/1", "workflow-run"), ("/data", "data"),
         ("/data/vectors", "vectors"), ("/data/memory", "memory"), ("/secrets", "secrets"),
         ("/settings", "settings"), ("/users", "users"), ("/instances", "instances"),
         ("/audit", "audit"))


def test_every_page_fits_a_phone_and_a_desktop(browser: Browser,
                                               full: tuple[OmniApp, ConsoleModule]) -> None:
    app, module = full
    assert module.url is not None
    app.plugins.grant("greeter-rust", "config", {}, persist=True)
    assert app.workflows.wait(app.workflows.start("welcome", {"name": "Ada"},
                                                  started_by="test").id, 60).state == \
        "succeeded"
    for i in range(3):
        app.jobs.enqueue("ticker", "tick", b"", delay_s=60 * (i + 1))
    assert module.console is not None
    now = time.time()
    for minute in range(30, -1, -1):  # half an hour of history for the charts
        for _ in range(minute % 7):
            app.plugins.call("greeter-rust", "greet", b'{"name": "x"}')
        module.console.history.sample(app, now=now - 60 * minute)
    app.storage.audit.append("ada", "config.set", "greeter-rust", {"greeting": "hi"},
                             {"greeting": "hello there, a long value to wrap"}, "127.0.0.1",
                             time.time())
    for size, suffix in (((1366, 900), "desktop"), ((390, 844), "phone")):
        context = browser.new_context(viewport={"width": size[0], "height": size[1]})
        page = context.new_page()
        sign_in(page, module.url)
        for path, name in PAGES:
            page.goto(f"{module.url}{path}")
            expect(page.locator("main h1").first).to_be_visible()
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= size[0], f"{path} scrolls sideways at {size[0]} px ({width}px)"
            if suffix == "phone":  # every section is reachable from the nav on a phone
                nav = page.locator("header nav")  # one row that scrolls sideways
                for label in ("Events", "Audit", "Data", "Secrets", "Settings", "Users"):
                    link = nav.locator(f"a:text-is('{label}')")
                    expect(link).to_be_visible()
                    link.scroll_into_view_if_needed()
                    box = link.bounding_box()
                    assert box and box["x"] >= 0 and box["x"] + box["width"] <= size[0], label
            shot(page, f"2-{suffix}-{name}")
        context.close()
