"""What a phone's right edge cut (390 x 844, a real chromium through Playwright): the run
view's step graph, three steps left to right, was 616 px wide in a box that scrolled sideways,
and the Instances page's Drain button sat past the edge of a table that scrolled too. Now the
graph reads top to bottom on a phone and the instances are cards: every step box and the Drain
button lie inside the screen. Screenshots: build/console-screenshots/phone-edges-*.png."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from omnicore import OmniApp
from omnicore.console import ConsoleModule
from tests.browsers import off_thread, shot
from tests.waiting import eventually

PASSWORD = "lovelace-1815"
PHONE = {"width": 390, "height": 844}
CHAIN = """\
format: omniflow/v1
name: chain
steps:
  - {id: first, uses: "plugin:greeter-rust/greet", with: {name: Ada}}
  - {id: second, uses: "plugin:greeter-rust/greet", needs: [first], with: {name: Bo}}
  - {id: third_greeting, uses: "plugin:greeter-rust/greet", needs: [second], with: {name: Cy}}
  - {id: also_after_first, uses: "plugin:greeter-rust/greet", needs: [first], with: {name: Di}}
"""

# The boxes of what is shown and outside [0, innerWidth]: (what, left, right).
OUTSIDE = """(sel) => [...document.querySelectorAll(sel)]
  .filter((e) => { const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0; })
  .map((e) => { const r = e.getBoundingClientRect();
                return [e.closest("[data-step]")?.dataset.step || e.textContent.trim(),
                        Math.round(r.left), Math.round(r.right)]; })
  .filter(([, left, right]) => left < -0.5 || right > innerWidth + 0.5)"""


@pytest.fixture
def console(tmp_path: Path, greeter_wasm: Path) -> Iterator[tuple[OmniApp, ConsoleModule]]:
    for folder in ("plugins", "workflows"):
        (tmp_path / folder).mkdir()
    shutil.copy(greeter_wasm, tmp_path / "plugins" / "greeter-rust.wasm")
    (tmp_path / "workflows" / "chain.yaml").write_text(CHAIN)
    app = OmniApp("phone-edges", environ={}, entry_points=False, overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(tmp_path / "plugins"),
        "console": {"port": 0}, "workflows": {"dir": str(tmp_path / "workflows"),
                                              "poll_s": 0.1},
        "plugins": {"greeter-rust": {"grants": {"config": {}}}}})
    module = ConsoleModule()
    app.add_module(module)
    off_thread(app.start)
    assert module.console is not None
    module.console.auth.store.add("admin", PASSWORD, "admin")
    run = app.workflows.start("chain", {})

    def done() -> bool:
        got = app.workflows.get_run(run.id)
        return got is not None and got.state == "succeeded"
    eventually(done, "the chain's run to succeed")
    try:
        yield app, module
    finally:
        off_thread(app.stop)


def signed_in(browser: Browser, url: str, width: int, height: int) -> Page:
    page = browser.new_context(viewport={"width": width, "height": height}).new_page()
    page.goto(f"{url}/login")
    page.fill("input[name=name]", "admin")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Overview")
    return page


def test_the_step_graph_and_the_drain_button_lie_inside_a_phones_screen(
        browser: Browser, console: tuple[OmniApp, ConsoleModule]) -> None:
    _, module = console
    assert module.url is not None
    page = signed_in(browser, module.url, **PHONE)

    page.goto(f"{module.url}/workflows/runs/1")
    down = page.locator("#step-graph-down")
    expect(down).to_be_visible()
    expect(page.locator("#step-graph")).to_be_hidden()
    expect(down.locator("g.g-succeeded")).to_have_count(4)
    expect(down.locator("path.edge")).to_have_count(3)
    shot(page, "phone-edges-run")
    assert page.evaluate(OUTSIDE, "#step-graph-down g.node rect, .graph-wrap") == []
    # Drawn at its own size, in dependency order top to bottom: nothing shrunk past reading.
    scale = page.eval_on_selector("#step-graph-down", "s => s.getBoundingClientRect().width / "
                                                      "s.viewBox.baseVal.width")
    assert scale >= 0.99, f"the step graph is drawn at {scale:.0%}"
    tops = {step: down.locator(f"g[data-step={step}] rect").bounding_box()
            for step in ("first", "second", "third_greeting", "also_after_first")}
    assert all(tops.values())
    ys = {step: box["y"] for step, box in tops.items() if box}
    assert ys["first"] < ys["second"] < ys["third_greeting"]
    assert ys["first"] < ys["also_after_first"]

    page.goto(f"{module.url}/instances")
    drain = page.locator("#instances button", has_text="Drain")
    expect(drain).to_be_visible()
    shot(page, "phone-edges-instances")
    assert page.evaluate(OUTSIDE, "#instances button, #instances td, #instances code") == []
    # A card holds what the table showed on a phone, its wide-only columns still hidden.
    expect(page.locator("#instances td.wide-only").first).to_be_hidden()
    box = drain.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"]
    page.context.close()


def test_a_wide_screen_keeps_the_graph_left_to_right(
        browser: Browser, console: tuple[OmniApp, ConsoleModule]) -> None:
    _, module = console
    assert module.url is not None
    page = signed_in(browser, module.url, 1366, 768)
    page.goto(f"{module.url}/workflows/runs/1")
    across = page.locator("#step-graph")
    expect(across).to_be_visible()
    expect(page.locator("#step-graph-down")).to_be_hidden()
    first = across.locator("g[data-step=first] rect").bounding_box()
    second = across.locator("g[data-step=second] rect").bounding_box()
    assert first and second and second["x"] > first["x"] + first["width"]
    page.goto(f"{module.url}/instances")
    # The instances are a table again: the heading row is shown.
    expect(page.locator("#instances thead")).to_be_visible()
    shot(page, "phone-edges-wide-instances")
    page.context.close()
