"""The workflow editor in a real browser (Debian's chromium through Playwright): a workflow
built by dragging from the palette and linking nodes, a schema form filled, a validation error
seen and fixed, saved, checked by ``omnicore workflows validate``, run, approved and watched
turning green; a hand-written file edited with its comments kept; a save over a file changed
on disk refused; a viewer who sees the graph and cannot save. Screenshots go to
build/console-screenshots/ (1366 px and a phone)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from playwright.sync_api import Browser, Page, expect

from omnicore import OmniApp
from omnicore.cli.main import main
from omnicore.console import ConsoleModule
from tests.browsers import off_thread, shot

PASSWORD = "lovelace-1815"
NOTES = """\
# Hand-written: the team's greeting. Keep these comments.
format: omniflow/v1
name: notes
description: Say hello to the team   # shown in the list
steps:
  # The one step: greet whoever is on call.
  - id: hello
    uses: plugin:greeter-rust/greet
    with: {name: "on call"}   # who is greeted
"""


@pytest.fixture
def editing(tmp_path: Path, greeter_wasm: Path) -> Iterator[tuple[OmniApp, ConsoleModule]]:
    for folder in ("plugins", "workflows"):
        (tmp_path / folder).mkdir()
    shutil.copy(greeter_wasm, tmp_path / "plugins" / "greeter-rust.wasm")
    (tmp_path / "workflows" / "notes.yaml").write_text(NOTES)
    app = OmniApp("wf-editor", environ={}, entry_points=False, overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(tmp_path / "plugins"),
        "console": {"port": 0}, "workflows": {"dir": str(tmp_path / "workflows"),
                                              "poll_s": 0.1},
        "plugins": {"greeter-rust": {"grants": {"config": {}}}}})
    module = ConsoleModule()
    app.add_module(module)
    off_thread(app.start)
    assert module.console is not None
    module.console.auth.store.add("ada", PASSWORD, "admin")
    module.console.auth.store.add("vic", PASSWORD, "viewer")
    try:
        yield app, module
    finally:
        off_thread(app.stop)


def sign_in(browser: Browser, url: str, name: str, width: int = 1366) -> Page:
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.goto(f"{url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Overview")
    return page


def center(page: Page, selector: str) -> tuple[float, float]:
    """The middle of ``selector`` on the page, read in one step: every check of the draft
    draws the graph anew, so an element found in one step may be gone in the next."""
    page.wait_for_selector(selector)
    x, y = page.eval_on_selector(selector, "e => { const r = e.getBoundingClientRect(); "
                                           "return [r.x + r.width / 2, r.y + r.height / 2]; }")
    return float(x), float(y)


def drag(page: Page, source: str, x: float, y: float) -> None:
    """Press on ``source``, move in steps (as a hand does) to the page point, release; once
    the draft's check has answered (it redraws the graph and the panel, which moved the node
    from under a press on a loaded machine)."""
    expect(page.locator("#wfe-problems")).to_have_attribute("aria-busy", "false")
    page.mouse.move(*center(page, source))
    page.mouse.down()
    page.mouse.move(x, y, steps=8)
    page.mouse.up()


def drop_from_palette(page: Page, item: str, x: float, y: float) -> None:
    canvas = page.locator("#wfe-canvas").bounding_box()
    assert canvas is not None
    drag(page, f"#wfe-items [data-item='{item}']", canvas["x"] + x, canvas["y"] + y)


def link(page: Page, source: str, target: str) -> None:
    drag(page, f"g[data-step={source}] .wfe-port", *center(page, f"g[data-step={target}] rect"))


def test_build_save_run_and_approve_a_workflow(
        browser: Browser, editing: tuple[OmniApp, ConsoleModule]) -> None:
    app, module = editing
    url = module.url
    assert url is not None
    page = sign_in(browser, url, "ada")
    page.goto(f"{url}/workflows")
    page.fill("#new-workflow input[name=name]", "onboard")
    page.click("#new-workflow button")
    expect(page.locator("#wfe-status")).to_have_text("new")
    expect(page.locator("#wfe-problems")).to_contain_text("should be non-empty")

    # Three steps from the palette (the search narrows it), then two links drawn by hand.
    page.fill("#wfe-search", "greet")
    expect(page.locator("#wfe-items [data-item='approval']")).to_have_count(0)
    drop_from_palette(page, "plugin:greeter-rust/greet", 120, 60)
    page.fill("#wfe-search", "")
    drop_from_palette(page, "approval", 360, 60)
    drop_from_palette(page, "plugin:greeter-rust/greet", 600, 60)
    graph = page.locator("#wfe-graph")
    expect(graph.locator("g.wfe-node")).to_have_count(3)
    expect(graph.locator("g[data-step=greet_2]")).to_have_count(1)
    link(page, "greet", "approve")
    link(page, "approve", "greet_2")
    expect(graph.locator("g.wfe-link")).to_have_count(2)
    # Where the node is, read in one step (each check of the draft draws the graph anew), in
    # the graph's own units: a client y moves with the page's scroll, which a click that
    # brings the layout button into view changes (a run failed so, the node "never back").
    def top() -> float:
        return float(page.eval_on_selector("g[data-step=greet_2] rect",
                                           "r => r.y.baseVal.value"))
    def until_top(compare: str, limit: float) -> float:
        # The graph is drawn anew after each change, not at once: wait for the node to get
        # there (a single read raced the redraw on a loaded machine).
        page.wait_for_function(
            "([limit, below]) => { const r = document.querySelector("
            "'g[data-step=greet_2] rect'); const y = r && r.y.baseVal.value;"
            " return r && (below ? y < limit : y > limit); }", arg=[limit, compare == "<"])
        return top()

    start = top()
    _, middle = center(page, "g[data-step=greet_2] rect")
    drag(page, "g[data-step=greet_2] text.wfe-id", 700, middle + 150)
    moved = until_top(">", start + 100)
    page.click("#wfe-layout")
    until_top("<", moved - 100)  # back in its row

    # The run's own input (the workflow's panel shows with no step selected), then the
    # schema form: the handler's name field; a bad expression is an error on the node.
    page.locator("#wfe-graph").click(position={"x": 20, "y": 330})
    page.fill("#wfe-panel input[name=new-input]", "who")
    page.check("#wfe-panel input[name=new-input-required]")
    page.click("#wfe-add-input")
    expect(page.locator("#wfe-panel .wfe-inputs")).to_contain_text("required")
    graph.locator("g[data-step=greet] rect").first.click()
    page.click("#wfe-panel .wfe-chip[data-expr='inputs.who']")  # nowhere to put it yet
    expect(page.locator("#wfe-message")).to_contain_text("Click into a field first")
    page.fill("#wfe-panel input[name='in.name']", "someone")
    page.click("#wfe-panel .wfe-chip[data-expr='inputs.who']")
    expect(page.locator("#wfe-panel input[name='in.name']")).to_have_value("${{ inputs.who }}")
    graph.locator("g[data-step=greet_2] rect").first.click()
    expect(page.locator("#wfe-panel")).to_contain_text("steps.greet.output.message")
    page.fill("#wfe-panel input[name='in.name']", "${{ steps.greet.output.message + }}")
    expect(page.locator("#wfe-problems li.p-error")).to_contain_text("not valid CEL")
    expect(graph.locator("g[data-step=greet_2]")).to_have_class(
        "wfe-node k-plugin selected bad")
    expect(page.locator("#wfe-save")).to_be_disabled()
    shot(page, "workflow-editor-error")
    page.fill("#wfe-panel input[name='in.name']", "${{ steps.greet.output.message }}")
    expect(page.locator("#wfe-problems")).to_contain_text("None")
    expect(graph.locator("g.bad")).to_have_count(0)

    # Delete a step (its links go with it), undo brings both back, redo and undo again.
    page.click("#wfe-delete")
    expect(graph.locator("g.wfe-node")).to_have_count(2)
    expect(graph.locator("g.wfe-link")).to_have_count(1)
    page.click("#wfe-undo")
    expect(graph.locator("g.wfe-node")).to_have_count(3)
    page.click("#wfe-redo")
    expect(graph.locator("g.wfe-node")).to_have_count(2)
    page.keyboard.press("Control+z")
    expect(graph.locator("g.wfe-link")).to_have_count(2)
    expect(page.locator("#wfe-problems")).to_contain_text("None")
    page.locator("#wfe-graph").click(position={"x": 20, "y": 330})  # the workflow's panel

    page.click("#wfe-save")
    expect(page.locator("#wfe-status")).to_have_text("saved")
    saved = Path(app.workflows.settings.dir) / "onboard.yaml"
    result = CliRunner().invoke(main, ["workflows", "validate", str(saved)])
    assert result.exit_code == 0, result.output
    assert "ok — workflow onboard, 3 step(s)" in result.output
    wf = app.workflows.entries.get("onboard")
    assert [(s.id, s.needs) for s in wf.steps] == [
        ("greet", ()), ("approve", ("greet",)),
        ("greet_2", ("approve", "greet"))]  # the expression's step counts as a need
    entry = app.storage.audit.entries(action_prefix="workflow.save")[0]
    assert entry.action == "workflow.save" and entry.target == "workflow:onboard"
    assert "+  - id: approve" in entry.after["diff"]
    shot(page, "workflow-editor")

    # Run it from the editor and watch: the approval waits, is approved, all turn green.
    page.fill("#wfe-panel input[name='run.who']", "Ada")
    page.click("#wfe-run")
    approve = page.locator("#wfe-panel .wfe-approve")
    expect(approve).to_be_visible()
    expect(graph.locator("g[data-step=approve]")).to_contain_text("waiting")
    expect(graph.locator("g[data-step=greet]")).to_contain_text("succeeded")
    shot(page, "workflow-editor-waiting")
    approve.click()
    expect(page.locator("#wfe-run-state")).to_have_text("succeeded")
    expect(graph.locator("g.g-succeeded")).to_have_count(3)
    graph.locator("g[data-step=greet_2] rect").first.click()
    expect(page.locator("#wfe-panel pre")).to_contain_text("Hello, Hello, Ada!!")
    shot(page, "workflow-editor-run")

    phone = browser.new_context(viewport={"width": 390, "height": 844},
                                storage_state=page.context.storage_state()).new_page()
    phone.goto(f"{url}/workflows/onboard/edit")
    expect(phone.locator(".wfe-phone-note")).to_be_visible()
    expect(phone.locator("#wfe-graph g.wfe-node")).to_have_count(3)
    expect(phone.locator("#wfe-save")).to_be_hidden()
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the editor scrolls sideways on a phone ({width}px)"
    shot(phone, "phone-workflow-editor")
    phone.context.close()
    page.context.close()


def test_a_hand_written_file_keeps_its_comments_and_is_never_overwritten_unseen(
        browser: Browser, editing: tuple[OmniApp, ConsoleModule]) -> None:
    app, module = editing
    url = module.url
    assert url is not None
    path = Path(app.workflows.settings.dir) / "notes.yaml"
    page = sign_in(browser, url, "ada")
    page.goto(f"{url}/workflows/notes/edit")
    expect(page.locator("#wfe-status")).to_have_text("saved")
    page.locator("#wfe-graph g[data-step=hello] rect").first.click()
    page.fill("#wfe-panel input[name='in.name']", "the whole team")
    expect(page.locator("#wfe-status")).to_have_text("unsaved changes")
    page.click("#wfe-save")
    expect(page.locator("#wfe-status")).to_have_text("saved")
    # One line changed, in place, its comment kept; every other line as it was written.
    written = path.read_text().splitlines()
    assert [line for line in written if line not in NOTES.splitlines()] == [
        '    with: {name: "the whole team"} # who is greeted']
    assert len(written) == len(NOTES.splitlines())
    history = httpx.get(f"{url}/api/v1/workflows/notes/file/history",
                        headers=_bearer(module, "ada")).json()
    assert history["total"] == 1

    # Someone edits the file by hand meanwhile: the next save is refused, nothing is lost.
    path.write_text(path.read_text().replace("Say hello", "Say hi"))
    page.fill("#wfe-panel input[name='in.name']", "everyone")
    page.click("#wfe-save")
    expect(page.locator("#wfe-message")).to_contain_text("changed on disk since it was opened")
    expect(page.locator("#wfe-reload")).to_be_visible()
    assert "Say hi" in path.read_text() and "everyone" not in path.read_text()
    page.once("dialog", lambda dialog: dialog.accept())  # "Reloading notes drops your ..."
    page.click("#wfe-reload")
    expect(page.locator("#wfe-status")).to_have_text("saved")

    # The version the first save replaced is kept: write it back from the editor.
    page.click("#wfe-history")
    expect(page.locator(".wfe-restore")).to_have_count(1)
    page.click(".wfe-restore")
    expect(page.locator("#wfe-message")).to_contain_text("Restored")
    assert path.read_text() == NOTES
    page.context.close()

    # A viewer sees the graph read-only, and the API refuses the viewer's save.
    viewer = sign_in(browser, url, "vic")
    viewer.goto(f"{url}/workflows/notes/edit")
    expect(viewer.locator("#wfe-status")).to_have_text("read-only")
    expect(viewer.locator("#wfe-graph g[data-step=hello]")).to_have_count(1)
    expect(viewer.locator("#wfe-save")).to_be_hidden()
    expect(viewer.locator(".wfe-palette")).to_be_hidden()
    viewer.context.close()
    headers = _bearer(module, "vic")
    doc = httpx.get(f"{url}/api/v1/workflows/notes/file", headers=headers).json()
    r = httpx.put(f"{url}/api/v1/workflows/notes/file", headers=headers,
                  json={"document": doc["document"], "digest": doc["digest"]})
    assert r.status_code == 403
    assert path.read_text() == NOTES


def _bearer(module: ConsoleModule, user: str) -> dict[str, str]:
    assert module.console is not None
    token, _ = module.console.auth.store.new_token(user, "editor-test")
    return {"Authorization": f"Bearer {token}"}
