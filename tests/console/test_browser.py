"""The operator's whole loop in a real browser (Debian's chromium through Playwright):
set up the first admin, sign in, upload the Rust greeter, grant config, set its config, invoke
it, watch its log line arrive live, revoke and see needs-grant. Then the data a host keeps:
set a secret and see its name (never its value), vector collections, memories and a recall,
and a workflow run's step view. Screenshots of every page go to build/console-screenshots/
(desktop and phone widths)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from omnicore import OmniApp
from omnicore.console import ConsoleModule
from tests.browsers import off_thread, shot


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[OmniApp, ConsoleModule]]:
    (tmp_path / "plugins").mkdir()
    app = OmniApp("browser-demo", overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(tmp_path / "plugins"),
        "console": {"port": 0}})
    module = ConsoleModule()
    app.add_module(module)
    # Playwright's sync API keeps an event loop running in this thread; the app's blocking
    # start/stop refuse to run inside one, so they run on a helper thread.
    off_thread(app.start)
    try:
        yield app, module
    finally:
        off_thread(app.stop)


def test_operator_loop_in_a_browser(browser: Browser, running: tuple[OmniApp, ConsoleModule],
                                    greeter_wasm: Path) -> None:
    app, module = running
    assert module.console is not None and module.url is not None
    store = module.console.auth.store
    # The one-time link the host logs on first start (a fresh one: the logged secret is
    # only in the log).
    link = f"{module.url}/setup?token={store.new_setup_link()}"
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.goto(link)
    shot(page, "setup")
    page.fill("input[name=name]", "ada")
    page.fill("input[name=password]", "lovelace-1815")
    page.fill("input[name=password2]", "lovelace-1815")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Overview")
    page.goto(link)  # the link works once; then it says an admin exists and leads to sign-in
    expect(page.locator(".notice")).to_contain_text("An admin exists already: sign in")

    # Sign out and in again through the sign-in page.
    page.goto(f"{module.url}/")
    page.click("text=Sign out")
    expect(page).to_have_url(re.compile(r"/login"))
    page.fill("input[name=name]", "ada")
    page.fill("input[name=password]", "wrong password")
    page.click("button[type=submit]")
    expect(page.locator(".error")).to_contain_text("wrong user name or password")
    shot(page, "login")
    page.fill("input[name=password]", "lovelace-1815")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Overview")

    # Upload the example plugin: it shows needs-grant.
    page.click("nav >> text=Plugins")
    page.set_input_files("input[type=file]", str(greeter_wasm))
    page.click("button:has-text('Upload')")
    expect(page.locator("#plugin-state")).to_have_text("needs-grant")
    assert (app.config.plugins_dir / greeter_wasm.name).is_file()

    # Grant config: live at once.
    page.select_option("#grant-form select[name=capability]", "config")
    page.click("#grant-form button")
    expect(page.locator("#plugin-state")).to_have_text("loaded")
    expect(page.locator(".notice")).to_have_text("Granted.")

    # Config that fails the manifest's schema is refused; a good one is live.
    page.fill("textarea[name=config]", '{"greeting": 42}')
    page.click("text=Save config")
    expect(page.locator(".error")).to_contain_text("greeting")
    page.fill("textarea[name=config]", '{"greeting": "Ahoy"}')
    page.click("text=Save config")
    expect(page.locator(".notice")).to_have_text("Config saved and live.")

    # Watch the live log in a second tab while invoking in the first.
    logs = context.new_page()
    logs.goto(f"{module.url}/logs?plugin=greeter-rust")
    expect(logs.locator("#live-state")).to_have_text("live")

    # The handler's input schema (from the Rust SDK's types) makes the form: a field per
    # argument, the raw JSON box hidden until JSON is chosen.
    expect(page.locator("#invoke-form textarea[name=input]")).to_be_hidden()
    page.fill("fieldset[data-args-for=greet] input[type=text]", "Grace")
    page.click("#invoke-form button")
    result = page.locator("#invoke-result pre")
    expect(result).to_contain_text("Ahoy, Grace!")
    assert json.loads(result.inner_text()) == {"message": "Ahoy, Grace!"}
    shot(page, "plugin")
    expect(logs.locator("#live-log")).to_contain_text("Grace")
    shot(logs, "logs")

    # A hostile-looking input comes back as text, in the page and in the live log.
    page.select_option("#invoke-form select[name=format]", "json")
    page.fill("textarea[name=input]", '{"name": "<img src=x onerror=alert(1)>"}')
    page.click("#invoke-form button")
    expect(page.locator("#invoke-result pre")).to_contain_text("<img src=x onerror=alert(1)>")
    expect(logs.locator("#live-log")).to_contain_text("<img src=x onerror=alert(1)>")
    assert logs.locator("#live-log img").count() == 0

    # Invoke errors are typed.
    page.fill("textarea[name=input]", "not json")
    page.select_option("select[name=format]", "text")
    page.click("#invoke-form button")
    expect(page.locator("#invoke-result .badge")).to_have_text("GuestError")

    # Revoke: back to needs-grant.
    page.locator("form:has(input[name=capability][value=config]) >> text=Revoke").click()
    expect(page.locator("#plugin-state")).to_have_text("needs-grant")
    assert app.plugins.get("greeter-rust").state == "needs-grant"

    for path, name in (("/", "overview"), ("/plugins", "plugins"), ("/tasks", "tasks"),
                       ("/data", "data"), ("/settings", "settings"), ("/users", "users")):
        page.goto(f"{module.url}{path}")
        expect(page.locator("h1")).to_be_visible()
        shot(page, name)

    phone = browser.new_context(viewport={"width": 390, "height": 844},
                                storage_state=context.storage_state())
    small = phone.new_page()
    for path, name in (("/", "overview"), ("/plugins", "plugins"),
                       ("/plugins/greeter-rust", "plugin")):
        small.goto(f"{module.url}{path}")
        width = small.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} scrolls sideways on a phone ({width}px)"
        shot(small, f"phone-{name}")
    phone.close()
    context.close()


WORKFLOW = """\
format: omniflow/v1
name: welcome
description: Greet someone, then greet the greeting.
inputs:
  type: object
  properties: {name: {type: string, description: who to greet}}
  required: [name]
steps:
  - {id: greet, uses: plugin:greeter-rust/greet, with: {name: "${{ inputs.name }}"}}
  - {id: echo, needs: [greet], uses: plugin:greeter-rust/greet,
     with: {name: "${{ steps.greet.output.message }}"}}
outputs: {said: "${{ steps.echo.output.message }}"}
"""
SECRET_VALUE = "ghp_s3cr3t-never-shown-0815"


@pytest.fixture
def stocked(tmp_path: Path, greeter_wasm: Path) -> Iterator[tuple[OmniApp, ConsoleModule]]:
    """A host with the greeter granted, a workflow, vectors and memories."""
    for folder in ("plugins", "workflows"):
        (tmp_path / folder).mkdir()
    shutil.copy(greeter_wasm, tmp_path / "plugins" / "greeter-rust.wasm")
    (tmp_path / "workflows" / "welcome.yaml").write_text(WORKFLOW)
    app = OmniApp("browser-data", environ={}, entry_points=False, overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(tmp_path / "plugins"),
        "console": {"port": 0}, "workflows": {"dir": str(tmp_path / "workflows"),
                                              "poll_s": 0.1},
        "plugins": {"greeter-rust": {"grants": {
            "config": {}, "secrets": {"expose": ["GITHUB_TOKEN", "SLACK_WEBHOOK"]},
            "memory": {}, "vectors": {}}}}})
    module = ConsoleModule()
    app.add_module(module)
    off_thread(app.start)
    try:
        yield app, module
    finally:
        off_thread(app.stop)


def test_secrets_data_and_a_workflow_run_in_a_browser(
        browser: Browser, stocked: tuple[OmniApp, ConsoleModule]) -> None:
    app, module = stocked
    assert module.console is not None and module.url is not None
    module.console.auth.store.add("ada", "lovelace-1815", "admin")
    docs = app.vectors.for_plugin("greeter-rust")
    docs.create("docs", 4)
    for i in range(12):
        docs.upsert("docs", f"doc-{i}", [1.0, i / 12, 0.5, 0.25], {"page": i})
    mem = app.memory.for_plugin("greeter-rust")
    mem.remember(0, "Ada is reading the March invoices")
    mem.remember(1, "Ada prefers answers in bullet points", {"topic": "style"})
    mem.remember(2, "Invoices are due on the first working day of the month", importance=0.9)
    run = app.workflows.start("welcome", {"name": "Ada"}, started_by="test")
    assert app.workflows.wait(run.id, 60).state == "succeeded"

    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())  # the delete confirmations
    page.goto(f"{module.url}/login")
    page.fill("input[name=name]", "ada")
    page.fill("input[name=password]", "lovelace-1815")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Overview")

    # Secrets: set one from the form; its name shows, its value never does.
    page.click("nav >> text=Secrets")
    expect(page.locator("#wanted")).to_contain_text("GITHUB_TOKEN")
    page.fill("#secret-form input[name=name]", "GITHUB_TOKEN")
    page.fill("#secret-form input[name=value]", SECRET_VALUE)
    page.click("#secret-form button")
    expect(page.locator(".notice")).to_contain_text("Secret saved")
    row = page.locator("tr[data-secret=GITHUB_TOKEN]")
    expect(row).to_contain_text("greeter-rust")
    expect(page.locator("#wanted")).not_to_contain_text("GITHUB_TOKEN")
    assert page.input_value("#secret-form input[name=value]") == ""
    assert SECRET_VALUE not in page.content()
    assert app.secrets.text("GITHUB_TOKEN") == SECRET_VALUE
    page.fill("#secret-form input[name=name]", "bad name")
    page.fill("#secret-form input[name=value]", SECRET_VALUE)
    page.eval_on_selector("#secret-form", "f => f.noValidate = true")
    page.click("#secret-form button")
    expect(page.locator(".error")).to_contain_text("bad secret name")
    assert SECRET_VALUE not in page.content()
    assert page.input_value("#secret-form input[name=value]") == ""
    page.goto(f"{module.url}/secrets")
    shot(page, "secrets")
    page.fill("#secret-form input[name=name]", "OLD_KEY")
    page.fill("#secret-form input[name=value]", "x")
    page.click("#secret-form button")
    page.locator("tr[data-secret=OLD_KEY] >> text=Delete").click()
    expect(page.locator(".notice")).to_have_text("Secret deleted.")
    assert app.secrets.names() == ["GITHUB_TOKEN"]

    # Data: vectors, memory and a recall.
    page.click("nav >> text=Data")
    page.click("nav.tabs >> text=Vectors")
    expect(page.locator("#collections")).to_contain_text("docs")
    expect(page.locator("#collections tbody tr").first).to_contain_text("12")
    shot(page, "vectors")
    page.click("nav.tabs >> text=Memory")
    expect(page.locator("tr[data-plugin=greeter-rust]")).to_contain_text("3")
    page.select_option("#recall-form select[name=plugin]", "greeter-rust")
    page.fill("#recall-form input[name=query]", "invoices")
    page.click("#recall-form button")
    expect(page.locator("#recalled tbody tr")).to_have_count(2)
    expect(page.locator("#recalled")).to_contain_text("first working day")
    shot(page, "memory")

    # The workflow, its run view: every step with its state, input and output.
    page.click("nav >> text=Workflows")
    expect(page.locator("h1")).to_have_text("Workflows")
    shot(page, "workflows")
    page.click("a:has-text('welcome')")
    expect(page.locator("h1")).to_contain_text("welcome")
    shot(page, "workflow")
    page.goto(f"{module.url}/workflows/runs/{run.id}")
    expect(page.locator("#run-state")).to_have_text("succeeded")
    expect(page.locator("tr[data-step=greet]")).to_contain_text("Hello, Ada!")
    expect(page.locator("tr[data-step=echo]")).to_contain_text("Hello, Hello, Ada!!")
    expect(page.locator("tr[data-step=echo] .badge")).to_have_text("succeeded")
    graph = page.locator("#step-graph")
    expect(graph.locator("g.g-succeeded")).to_have_count(2)
    expect(graph.locator("path.edge")).to_have_count(1)  # echo needs greet
    greet_box = graph.locator("g[data-step=greet] rect").bounding_box()
    echo_box = graph.locator("g[data-step=echo] rect").bounding_box()
    assert greet_box and echo_box and echo_box["x"] > greet_box["x"] + greet_box["width"]
    shot(page, "workflow-run")

    phone = browser.new_context(viewport={"width": 390, "height": 844},
                                storage_state=context.storage_state())
    small = phone.new_page()
    for path, name in (("/secrets", "secrets"), ("/data/vectors", "vectors"),
                       ("/data/memory?plugin=greeter-rust&query=invoices", "memory"),
                       (f"/workflows/runs/{run.id}", "workflow-run")):
        small.goto(f"{module.url}{path}")
        width = small.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} scrolls sideways on a phone ({width}px)"
        shot(small, f"phone-{name}")
    phone.close()
    context.close()
