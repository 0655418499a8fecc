"""The workflow editor does not lose work or hide what is wrong, in a real browser (Debian's
chromium through Playwright): leaving with unsaved changes asks first (a console link, a
reload); a problem shows beside the field it is about and in the side panel's list, both
current while the field is typed in; the toolbar's "Run #N started." says how the run ended;
the palette opens with the built-in steps, renders descriptions' `code`, offers an HTTP
connector as requests and a database connector as statements (redis not at all). Screenshots
go to build/console-screenshots/."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Page, expect

from omnicore import OmniApp
from omnicore.console import ConsoleModule
from tests.browsers import off_thread, shot
from tests.console.test_workflow_editor import NOTES, PASSWORD, _bearer, sign_in

ROOT = Path(__file__).resolve().parents[2]
STOCK = ROOT / "build" / "plugins" / "stock-rust.wasm"


@pytest.fixture
def shop(tmp_path: Path, greeter_wasm: Path) -> Iterator[tuple[OmniApp, ConsoleModule]]:
    """The editor's host with an HTTP, a postgres and a redis connector (none reachable:
    nothing here connects), the greeter and, when built, stock-rust (its descriptions have
    Markdown code)."""
    for folder in ("plugins", "workflows"):
        (tmp_path / folder).mkdir()
    shutil.copy(greeter_wasm, tmp_path / "plugins" / "greeter-rust.wasm")
    if STOCK.is_file():
        shutil.copy(STOCK, tmp_path / "plugins" / STOCK.name)
    (tmp_path / "workflows" / "notes.yaml").write_text(NOTES)
    app = OmniApp("wf-care", environ={}, entry_points=False, overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(tmp_path / "plugins"),
        "console": {"port": 0}, "workflows": {"dir": str(tmp_path / "workflows"),
                                              "poll_s": 0.1},
        "connectors": {
            "api": {"base_url": "http://127.0.0.1:9"},
            "orders": {"kind": "postgres", "url": "postgres://shop@127.0.0.1:9/shop",
                       "secret": "orders-pw"},
            "cache": {"kind": "redis", "url": "redis://127.0.0.1:9"}},
        "plugins": {"greeter-rust": {"grants": {"config": {}}}}})
    module = ConsoleModule()
    app.add_module(module)
    off_thread(app.start)
    assert module.console is not None
    module.console.auth.store.add("ada", PASSWORD, "admin")
    try:
        yield app, module
    finally:
        off_thread(app.stop)


def edit_notes(browser: Browser, module: ConsoleModule) -> Page:
    assert module.url is not None
    page = sign_in(browser, module.url, "ada")
    page.goto(f"{module.url}/workflows/notes/edit")
    expect(page.locator("#wfe-status")).to_have_text("saved")
    return page


def test_leaving_with_unsaved_changes_asks_first(
        browser: Browser, shop: tuple[OmniApp, ConsoleModule]) -> None:
    _, module = shop
    page = edit_notes(browser, module)
    edit_url = page.url
    asked: list[tuple[str, str]] = []
    answer = {"accept": False}

    def on_dialog(dialog: Dialog) -> None:
        asked.append((dialog.type, dialog.message))
        if answer["accept"]:
            dialog.accept()
        else:
            dialog.dismiss()

    page.on("dialog", on_dialog)
    # Nothing changed yet: the nav leaves without a question.
    page.click("nav >> text=Jobs")
    expect(page.locator("h1")).to_contain_text("Jobs")
    assert asked == []
    page.goto(edit_url)
    page.locator("#wfe-graph g[data-step=hello] rect").first.click()
    page.fill("#wfe-panel input[name='in.name']", "the whole team")
    expect(page.locator("#wfe-status")).to_have_text("unsaved changes")

    # A console link asks; "stay" keeps the page and the edit.
    page.click("nav >> text=Plugins")
    assert asked == [("confirm", "notes has unsaved changes. Leave this page and drop them?")]
    assert page.url == edit_url
    expect(page.locator("#wfe-panel input[name='in.name']")).to_have_value("the whole team")

    # A reload gets the browser's own question; dismissed, the page and the edit stay.
    page.evaluate("location.reload()")
    page.wait_for_timeout(500)
    assert [kind for kind, _ in asked] == ["confirm", "beforeunload"]
    assert page.url == edit_url
    expect(page.locator("#wfe-status")).to_have_text("unsaved changes")

    # "Reload the file" asks too (it drops the draft).
    page.evaluate("document.getElementById('wfe-reload').hidden = false")
    page.click("#wfe-reload")
    assert asked[-1] == ("confirm", "Reloading notes drops your unsaved changes. Reload?")
    expect(page.locator("#wfe-status")).to_have_text("unsaved changes")

    # Accepted, the link is followed (and the browser does not ask a second time).
    answer["accept"] = True
    page.click("nav >> text=Plugins")
    expect(page.locator("h1")).to_contain_text("Plugins")
    assert [kind for kind, _ in asked] == ["confirm", "beforeunload", "confirm", "confirm"]
    page.context.close()


def test_problems_show_beside_the_field_and_stay_current_in_the_panel(
        browser: Browser, shop: tuple[OmniApp, ConsoleModule]) -> None:
    _, module = shop
    page = edit_notes(browser, module)
    page.locator("#wfe-graph g[data-step=hello] rect").first.click()
    name = page.locator("#wfe-panel input[name='in.name']")
    name.fill("${{ inputs.who + }}")   # the field keeps the focus: the panel is not rebuilt
    field = page.locator("#wfe-panel label:has(input[name='in.name']) .wfe-field-error")
    expect(field).to_contain_text("is not valid CEL")
    expect(name).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#wfe-step-problems li.p-error")).to_contain_text("is not valid CEL")
    expect(page.locator("#wfe-graph g[data-step=hello]")).to_have_class(
        "wfe-node k-plugin selected bad")
    assert name.evaluate("e => e === document.activeElement")
    shot(page, "workflow-editor-field-error")
    name.fill("${{ inputs.who }}")   # fixed while still typing: both go at once
    expect(page.locator("#wfe-graph g.bad")).to_have_count(0)
    expect(page.locator("#wfe-step-problems li")).to_have_count(0)
    expect(field).to_have_count(0)
    expect(name).not_to_have_attribute("aria-invalid", "true")

    # A step id that cannot be one is said beside the id field, not in the toolbar.
    step_id = page.locator("#wfe-panel input[name='step.id']")
    step_id.fill("2nd")
    step_id.press("Tab")
    expect(page.locator("#wfe-panel label:has(input[name='step.id']) .wfe-field-error")
           ).to_contain_text("2nd cannot be a step id")
    expect(page.locator("#wfe-message")).not_to_contain_text("cannot be a step id")
    page.context.close()


def test_the_run_message_says_how_the_run_ended(
        browser: Browser, shop: tuple[OmniApp, ConsoleModule]) -> None:
    _, module = shop
    page = edit_notes(browser, module)
    page.click("#wfe-run")
    expect(page.locator("#wfe-run-state")).to_have_text("succeeded")
    expect(page.locator("#wfe-message")).to_have_text("Run #1 succeeded.")
    page.context.close()


def test_the_palette_opens_with_built_in_steps_and_fits_each_connector(
        browser: Browser, shop: tuple[OmniApp, ConsoleModule]) -> None:
    _, module = shop
    assert module.url is not None
    page = sign_in(browser, module.url, "ada")
    page.goto(f"{module.url}/workflows")
    page.fill("#new-workflow input[name=name]", "restock")
    page.click("#new-workflow button")
    expect(page.locator("#wfe-status")).to_have_text("new")
    items = page.locator("#wfe-items li.wfe-item")
    expect(items.first).to_have_attribute("data-item", "approval")
    expect(items.nth(1)).to_have_attribute("data-item", "sleep")
    keys = items.evaluate_all("els => els.map(e => e.dataset.item)")
    assert keys.index("sleep") < keys.index("plugin:greeter-rust/greet")
    # HTTP: a request. postgres: a query or a statement. redis: nothing a step can do.
    assert [k for k in keys if k.startswith("connector:")] == [
        "connector:api", "connector:orders/query", "connector:orders/execute"]
    expect(page.locator("#wfe-items [data-item='connector:api'] small")).to_have_text(
        "an HTTP request through the connector")
    expect(page.locator("#wfe-items [data-item='connector:orders/query'] small")).to_have_text(
        "a SQL query on the postgres database (its rows)")
    expect(page.locator("#wfe-items li", has_text="an HTTP request")).to_have_count(1)
    if STOCK.is_file():  # "Takes `qty` units of a SKU ...": qty as code, no backticks
        reserve = page.locator("#wfe-items [data-item='plugin:stock-rust/reserve'] small")
        expect(reserve.locator("code")).to_have_text("qty")
        expect(reserve).not_to_contain_text("`")
    shot(page, "workflow-editor-palette")

    # A query step from the palette: its form asks for the statement and parameters.
    page.click("#wfe-items [data-item='connector:orders/query']")
    expect(page.locator("#wfe-graph g[data-step=orders]")).to_have_count(1)
    expect(page.locator("#wfe-panel textarea[name=sql]")).to_have_value("SELECT 1")
    expect(page.locator("#wfe-problems")).to_contain_text("None")

    # The validator behind the editor refuses an HTTP step naming a database connector.
    headers = _bearer(module, "ada")
    draft = {"format": "omniflow/v1", "name": "restock",
             "steps": [{"id": "load", "uses": "connector:orders", "path": "/"}]}
    found = httpx.post(f"{module.url}/api/v1/workflows/restock/file/validate", headers=headers,
                       json={"document": draft}).json()["problems"]
    assert [(p["step"], p["message"]) for p in found] == [
        ("load", "step 'load': connector 'orders' is a postgres database, not an HTTP API: run "
                 "a statement with uses: connector:orders/query (rows) or "
                 "connector:orders/execute (changes) and with: {sql: ..., params: [...]}")]
    palette = httpx.get(f"{module.url}/api/v1/workflow-palette", headers=headers).json()
    assert palette["connectors"] == [{"name": "api", "kind": "http"},
                                     {"name": "cache", "kind": "redis"},
                                     {"name": "orders", "kind": "postgres"}]
    page.context.close()


FOUR = """\
format: omniflow/v1
name: chain
steps:
  - {id: first_greeting, uses: "plugin:greeter-rust/greet", with: {name: a}}
  - {id: second_greeting, uses: "plugin:greeter-rust/greet", needs: [first_greeting]}
  - {id: third_greeting, uses: "plugin:greeter-rust/greet", needs: [second_greeting]}
  - {id: fourth_greeting, uses: "plugin:greeter-rust/greet", needs: [third_greeting]}
"""


def test_a_four_step_workflow_is_whole_at_1366_px(
        browser: Browser, shop: tuple[OmniApp, ConsoleModule]) -> None:
    app, module = shop
    assert module.url is not None
    (Path(app.workflows.settings.dir) / "chain.yaml").write_text(FOUR)
    app.workflows.entries.scan()
    page = sign_in(browser, module.url, "ada")
    page.goto(f"{module.url}/workflows/chain/edit")
    expect(page.locator("#wfe-graph g.wfe-node")).to_have_count(4)
    canvas = page.locator("#wfe-canvas")
    box = canvas.bounding_box()
    assert box is not None
    for node in page.locator("#wfe-graph g.wfe-node rect:not(.wfe-kind)").all():
        r = node.bounding_box()
        assert r is not None and box["x"] <= r["x"] and r["x"] + r["width"] <= box["x"] + box[
            "width"], f"a node is cut off: {r} outside the canvas {box}"
    assert canvas.evaluate("c => c.scrollWidth <= c.clientWidth")
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")
    # Still edited by hand at that size: a node dragged down lands under the pointer.
    x, y = page.eval_on_selector("g[data-step=fourth_greeting] text.wfe-id",
                                 "e => { const r = e.getBoundingClientRect(); "
                                 "return [r.x + r.width / 2, r.y + r.height / 2]; }")
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x, y + 120, steps=6)
    page.mouse.up()
    moved = page.eval_on_selector("g[data-step=fourth_greeting] text.wfe-id",
                                  "e => e.getBoundingClientRect().y + "
                                  "e.getBoundingClientRect().height / 2")
    assert abs(moved - (y + 120)) < 3
    # The side panel's expressions to paste wrap inside it (after their dots).
    wide = page.locator("#wfe-panel *").evaluate_all(
        "els => els.filter(e => e.scrollWidth > e.clientWidth + 1).map(e => e.outerHTML)")
    assert wide == []
    shot(page, "workflow-editor-four-steps")
    page.context.close()
