"""The console at a phone's 390 px and a laptop's 1366 px, in a real browser (Debian's
chromium through Playwright), every page: nothing wider than the screen or cut off at its
edge, the nav in one row at 1366 px and a few lines on a phone, the run view's approval
question readable beside its buttons, no word broken inside on the plugin page, every date
in one (ISO) form, no "attempt 0" on an approval, no request answered 404, a favicon.
Screenshots of every page at both widths go to build/console-screenshots/widths-*.png."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from omnicore import OmniApp
from omnicore.console import ConsoleModule
from tests.browsers import off_thread, shot
from tests.waiting import eventually

PASSWORD = "lovelace-1815"
WIDTHS = {"phone": (390, 844), "laptop": (1366, 768)}
FLOW = """\
format: omniflow/v1
name: ship
description: Greet, ask, greet again
steps:
  - {id: greet, uses: "plugin:greeter-rust/greet", with: {name: Ada}}
  - id: approve
    needs: [greet]
    wait: {approval: {message: "Approve this run?"}}
  - {id: again, uses: "plugin:greeter-rust/greet", needs: [approve], with: {name: Bo}}
"""
PAGES = ["/", "/plugins", "/plugins/greeter-rust", "/logs", "/jobs", "/events", "/workflows",
         "/workflows/ship", "/workflows/runs/1", "/data", "/secrets", "/settings", "/users",
         "/oauth/clients", "/instances", "/audit"]
#: A date in a US form (5/12/2025, 3:04:05 PM) or any other than 2025-05-12 15:04:05.
US_DATE = re.compile(r"\b\d{1,2}/\d{1,2}/\d{2,4}\b|\b\d{1,2}:\d{2}(:\d{2})?\s?[AP]M\b")

# Whatever is outside the viewport or wider than its box: (what, its box or widths).
OVERFLOW = """() => {
  const out = [];
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth) out.push(["page", root.scrollWidth, root.clientWidth]);
  for (const e of document.querySelectorAll("body *")) {
    const style = getComputedStyle(e);
    if (style.display === "none" || style.visibility === "hidden") continue;
    const r = e.getBoundingClientRect();
    if (!r.width && !r.height) continue;
    // Inside a box that scrolls sideways on purpose (a wide table, the step graph): the box
    // itself is checked, not its content.
    const scrolls = ".table-wrap, .graph-wrap, pre, .log, nav.tabs, header.top nav";
    if (e.parentElement.closest(scrolls)) continue;
    if (r.left < -0.5 || r.right > innerWidth + 0.5)
      out.push([e.tagName + "." + e.className, Math.round(r.left), Math.round(r.right)]);
  }
  return out;
}"""

# Words broken between two letters or digits (a name or a number cut in two: "greeter-ru|st"),
# under ``sel``: a break after a separator (/ . - _ :) is where a path or a key may wrap.
BROKEN_WORDS = """(sel) => {
  const out = [];
  const top = (node, at) => {
    const range = document.createRange();
    range.setStart(node, at);
    range.setEnd(node, at + 1);
    const rects = [...range.getClientRects()].filter((r) => r.width > 0);
    return rects.length ? rects[0].top : null;
  };
  for (const root of document.querySelectorAll(sel)) {
    const walk = document.createTreeWalker(root, NodeFilter.SHOW_TEXT);
    for (let n = walk.nextNode(); n; n = walk.nextNode()) {
      const parent = n.parentElement;
      if (!parent || parent.closest("pre, textarea, script, style, svg, .log")) continue;
      const text = n.textContent;
      for (const m of text.matchAll(/\\S+/g)) {
        let last = top(n, m.index);
        for (let k = m.index + 1; k < m.index + m[0].length; k++) {
          const now = top(n, k);
          if (now === null || last === null) { last = now; continue; }
          if (now > last + 2 && /[A-Za-z0-9]/.test(text[k - 1]) && /[A-Za-z0-9]/.test(text[k]))
            out.push(text.slice(m.index, k) + "|" + text.slice(k, m.index + m[0].length));
          last = now;
        }
      }
    }
  }
  return out;
}"""


@pytest.fixture
def console(tmp_path: Path, greeter_wasm: Path) -> Iterator[tuple[OmniApp, ConsoleModule]]:
    """A host with the greeter, a workflow run waiting for its approval, a job, a secret."""
    for folder in ("plugins", "workflows"):
        (tmp_path / folder).mkdir()
    shutil.copy(greeter_wasm, tmp_path / "plugins" / "greeter-rust.wasm")
    (tmp_path / "workflows" / "ship.yaml").write_text(FLOW)
    # The demo's name and first user: the longest header a new user meets.
    app = OmniApp("omnicore-demo", environ={}, entry_points=False, overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(tmp_path / "plugins"),
        "console": {"port": 0}, "workflows": {"dir": str(tmp_path / "workflows"),
                                              "poll_s": 0.1},
        "plugins": {"greeter-rust": {"grants": {"config": {}}}}})
    module = ConsoleModule()
    app.add_module(module)
    off_thread(app.start)
    assert module.console is not None
    module.console.auth.store.add("admin", PASSWORD, "admin")
    run = app.workflows.start("ship", {})
    _wait_for(app, run.id)
    try:
        yield app, module
    finally:
        off_thread(app.stop)


def _wait_for(app: OmniApp, run_id: int) -> None:
    def waiting() -> bool:
        row = app.workflows.store.step(run_id, "approve")
        return row is not None and row.state == "waiting"
    eventually(waiting, "the run waiting for its approval")


def signed_in(browser: Browser, url: str, width: int, height: int) -> Page:
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.goto(f"{url}/login")
    page.fill("input[name=name]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Overview")
    return page


@pytest.mark.parametrize("size", list(WIDTHS))
def test_every_page_fits_the_screen_and_requests_nothing_missing(
        browser: Browser, console: tuple[OmniApp, ConsoleModule], size: str) -> None:
    _, module = console
    assert module.url is not None
    width, height = WIDTHS[size]
    page = signed_in(browser, module.url, width, height)
    missing: list[str] = []
    page.on("response", lambda r: missing.append(f"{r.status} {r.url}")
            if r.status == 404 else None)
    # What the browser asks by itself (the favicon) shows only as a console error.
    page.on("console", lambda m: missing.append(m.text) if m.type == "error" else None)
    broken: dict[str, list[str]] = {}
    problems: dict[str, object] = {}
    for path in PAGES:
        page.goto(f"{module.url}{path}")
        page.wait_for_load_state("networkidle")
        name = path.strip("/").replace("/", "-") or "overview"
        shot(page, f"widths-{size}-{name}")
        found = page.evaluate(OVERFLOW)
        if found:
            problems[path] = found[:5]
        words = page.evaluate(BROKEN_WORDS, "header, main")
        if words:
            broken[path] = words[:5]
        text = page.inner_text("main")
        assert not US_DATE.search(text), f"{path}: {US_DATE.search(text)}"
        assert "attempt 0" not in text.lower()
    assert problems == {}, f"at {width} px"
    assert broken == {}, f"words broken inside at {width} px"
    assert missing == [], "requests answered 404"


def test_the_nav_fits_one_row_at_1366_and_a_few_lines_on_a_phone(
        browser: Browser, console: tuple[OmniApp, ConsoleModule]) -> None:
    _, module = console
    assert module.url is not None
    # 1351 px: 1366 less a classic scrollbar, as a long page has.
    for width in (1366, 1351):
        page = signed_in(browser, module.url, width, 768)
        middles = page.locator("header.top > *, header.top nav a").evaluate_all(
            "es => es.map(e => { const r = e.getBoundingClientRect(); "
            "return (r.top + r.bottom) / 2; })")
        assert max(middles) - min(middles) < 10, \
            f"the header wraps at {width} px: items at heights {sorted(set(middles))}"
        if width == 1366:
            shot(page, "widths-laptop-nav")
        page.context.close()
    phone = signed_in(browser, module.url, 390, 844)
    header = phone.locator("header.top").bounding_box()
    assert header is not None and header["height"] <= 844 * 0.12, \
        f"the header takes {header['height'] if header else 0:.0f} of 844 px on a phone"
    # Every section is still one tap away.
    nav = phone.locator("header.top nav")
    expect(nav.locator("a", has_text="Audit")).to_have_count(1)
    shot(phone, "widths-phone-nav")
    phone.context.close()


def test_the_run_view_reads_on_a_phone(browser: Browser,
                                       console: tuple[OmniApp, ConsoleModule]) -> None:
    _, module = console
    assert module.url is not None
    page = signed_in(browser, module.url, 390, 844)
    page.goto(f"{module.url}/workflows/runs/1")
    question = page.locator("tr[data-step=approve] p", has_text="Approve this run?")
    expect(question).to_be_visible()
    box = question.bounding_box()
    assert box is not None and box["width"] >= 200, f"the question is squeezed: {box}"
    assert box["height"] < 60, f"the question takes {box['height']:.0f} px of height"
    for button in ("Approve", "Reject"):
        b = page.locator("tr[data-step=approve] button", has_text=button).bounding_box()
        assert b is not None and b["x"] >= 0 and b["x"] + b["width"] <= 390
    # The approval is no attempt: its row shows none.
    attempt = page.locator("tr[data-step=approve] td[data-label=Attempt]")
    expect(attempt).to_have_text("")
    # The step graph keeps its text readable: drawn at least at 90 % (top to bottom on a
    # phone, tests/console/test_phone_edges.py).
    scale = page.eval_on_selector("#step-graph-down", "s => s.getBoundingClientRect().width / "
                                                      "s.viewBox.baseVal.width")
    assert scale >= 0.9, f"the step graph is drawn at {scale:.0%}"
    shot(page, "widths-phone-run-approval")
    page.context.close()


@pytest.mark.parametrize("size", list(WIDTHS))
def test_the_plugin_page_breaks_no_word_inside(
        browser: Browser, console: tuple[OmniApp, ConsoleModule], size: str) -> None:
    _, module = console
    assert module.url is not None
    width, height = WIDTHS[size]
    page = signed_in(browser, module.url, width, height)
    page.goto(f"{module.url}/plugins/greeter-rust")
    broken = page.evaluate(BROKEN_WORDS, "main")
    assert broken == [], f"words broken inside at {width} px"
    # A name (a tool, a capability) is on one line, not even broken at its '-' or '.'.
    split = page.locator("main .token").evaluate_all(
        "es => es.filter(e => new Set([...e.getClientRects()].map(r => Math.round(r.top)))"
        ".size > 1).map(e => e.textContent)")
    assert split == [], f"names split across lines at {width} px"
    expect(page.locator("#mcp ul.tools li[data-handler=greet] .token")).to_have_text(
        "greeter-rust.greet")
    shot(page, f"widths-{size}-plugin-page")
    page.context.close()


def test_dates_are_iso_in_live_log_lines(
        browser: Browser, console: tuple[OmniApp, ConsoleModule]) -> None:
    app, module = console
    assert module.url is not None
    page = signed_in(browser, module.url, 1366, 768)
    page.goto(f"{module.url}/logs")
    expect(page.locator("#live-state")).to_have_text("live")
    app.plugins.call("greeter-rust", "greet", b'{"name": "Cy"}')
    line = page.locator("#live-log .line").first
    expect(line).to_be_visible()
    stamp = line.locator("time").inner_text()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", stamp), stamp
    page.context.close()


def test_a_favicon(console: tuple[OmniApp, ConsoleModule]) -> None:
    _, module = console
    r = httpx.get(f"{module.url}/favicon.ico")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/")
    page = httpx.get(f"{module.url}/login").text
    assert re.search(r'<link rel="icon"[^>]*href="/static/favicon.svg"', page)
    icon = httpx.get(f"{module.url}/static/favicon.svg")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg")
