"""The workflow pages in a real browser (Debian's chromium through Playwright): start a run
from the form generated from the input schema, watch it wait, approve it, see it succeed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from omnicore import OmniApp
from omnicore.console import ConsoleModule
from tests.browsers import off_thread
from tests.hosts import CHEAP_PASSWORD_HASH
from tests.workflows.conftest import app_dir

FLOW = """\
format: omniflow/v1
name: ship
inputs:
  type: object
  properties: {name: {type: string, description: who gets it}, rush: {type: boolean}}
  required: [name]
steps:
  - {id: greet, uses: plugin:greeter-rust/greet, with: {name: "${{ inputs.name }}"}}
  - {id: ok, needs: [greet], wait: {approval: {message: "Ship to this customer?"}}}
outputs: {said: "${{ steps.greet.output.message }}"}
"""


@pytest.fixture
def running(tmp_path: Path, built_plugins: dict[str, Path]
            ) -> Iterator[tuple[OmniApp, ConsoleModule]]:
    folder = app_dir(tmp_path / "app", {"greeter-rust": built_plugins["greeter-rust"]},
                     {"ship.yaml": FLOW})
    app = OmniApp(config_path=folder / "omnicore.yaml", environ={}, entry_points=False,
                  overrides={"console": {"enabled": True, "port": 0,
                                        "password_hash": CHEAP_PASSWORD_HASH}})
    module = ConsoleModule()
    app.add_module(module)
    off_thread(app.start)
    try:
        yield app, module
    finally:
        off_thread(app.stop)


def test_start_and_approve_a_run_in_a_browser(running: tuple[OmniApp, ConsoleModule],
                                              browser: Browser) -> None:
    app, module = running
    assert module.console is not None
    module.console.auth.store.add("ada", "lovelace-1815", "admin")
    page = browser.new_page()
    try:
        page.goto(f"{module.url}/login")
        page.fill("input[name=name]", "ada")
        page.fill("input[name=password]", "lovelace-1815")
        page.click("button[type=submit]")
        page.click("nav >> text=Workflows")
        expect(page.locator("h1")).to_have_text("Workflows")
        page.click("a:has-text('ship')")
        page.fill("input[name=name]", "Grace")
        page.check("input[name=rush]")
        page.click("button:has-text('Start run')")
        expect(page.locator("h1")).to_contain_text("Run #1 of ship")
        # The approval is created when the greet step has run: reload until it shows.
        approve = page.locator("button:has-text('Approve')")
        for _ in range(200):
            if approve.count():
                break
            page.wait_for_timeout(50)
            page.reload()
        expect(page.locator("text=Ship to this customer?")).to_be_visible()
        expect(page.locator("tr[data-step=greet]")).to_contain_text("Hello, Grace!")
        page.fill("input[name=comment]", "looks right")
        approve.click()
        expect(page.locator("#run-state")).to_have_text("succeeded", timeout=30_000)
        expect(page.locator("tr[data-step=ok]")).to_contain_text("decided by console:ada")
    finally:
        page.close()
    run = app.workflows.get_run(1)
    assert run.inputs == {"name": "Grace", "rush": True}
    assert run.outputs == {"said": "Hello, Grace!"}
