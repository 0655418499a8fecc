"""The workflow editor sets what a hand-written file could and the editor could not: a run's
outputs (a name and an expression each) and its triggers (a schedule, an event, a webhook;
each edited as its JSON entry), saved into the YAML file with its comments kept, checked by
``omnicore workflows validate``, and a run's outputs shown when it succeeds. In a real browser
(Debian's chromium through Playwright); screenshot build/console-screenshots/wfe-outputs.png."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner
from playwright.sync_api import Browser, expect

from omnicore import OmniApp
from omnicore.cli.main import main
from omnicore.console import ConsoleModule
from tests.browsers import shot
from tests.console.test_workflow_editor import editing, sign_in
from tests.waiting import eventually

# The editor's host (greeter-rust, notes.yaml, ada the admin, vic the viewer) and sign-in.
__all__ = ["editing"]  # a fixture, used by name


def test_outputs_and_triggers_are_set_in_the_editor_and_saved(
        browser: Browser, editing: tuple[OmniApp, ConsoleModule]) -> None:
    app, module = editing
    url = module.url
    assert url is not None
    path = Path(app.workflows.settings.dir) / "notes.yaml"
    page = sign_in(browser, url, "ada")
    page.goto(f"{url}/workflows/notes/edit")
    expect(page.locator("#wfe-status")).to_have_text("saved")
    panel = page.locator("#wfe-panel")

    # An output: a name and an expression over the steps' outputs.
    panel.locator("input[name=new-output]").fill("said")
    panel.locator("#wfe-add-output").click()
    expect(panel.locator(".wfe-field-error")).to_contain_text("an expression")
    panel.locator("input[name=new-output-value]").fill("${{ steps.hello.output.message }}")
    panel.locator("#wfe-add-output").click()
    expect(panel.locator("input[name='output.said']")).to_have_value(
        "${{ steps.hello.output.message }}")
    # One that names no step of the workflow is the validator's problem, on its field.
    panel.locator("input[name=new-output]").fill("wrong")
    panel.locator("input[name=new-output-value]").fill("${{ steps.nope.output }}")
    panel.locator("#wfe-add-output").click()
    expect(page.locator("#wfe-problems")).to_contain_text("steps.nope is not a step")
    expect(page.locator("#wfe-save")).to_be_disabled()
    panel.locator("button[title='remove output wrong']").click()
    expect(page.locator("#wfe-problems li.p-error")).to_have_count(0)

    # Triggers: a schedule, then a webhook (which needs its secret's name).
    panel.locator("input[name=new-trigger]").fill("nightly")
    panel.locator("input[name=new-trigger-value]").fill("0 2 * * *")
    panel.locator("#wfe-add-trigger").click()
    expect(panel.locator("textarea[name='trigger.0']")).to_contain_text('"cron": "0 2 * * *"')
    panel.locator("input[name=new-trigger]").fill("hook")
    panel.locator("select[name=new-trigger-kind]").select_option("webhook")
    panel.locator("input[name=new-trigger-value]").fill("notes/new")
    panel.locator("#wfe-add-trigger").click()
    expect(panel.locator(".wfe-field-error")).to_contain_text("secret")
    panel.locator("input[name=new-trigger-secret]").fill("NOTES_HOOK")
    panel.locator("#wfe-add-trigger").click()
    expect(panel.locator("textarea[name='trigger.1']")).to_contain_text('"secret": "NOTES_HOOK"')
    # A trigger's JSON edited in place: its timezone.
    panel.locator("textarea[name='trigger.0']").fill(
        '{"name": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Paris"}')
    shot(page, "wfe-outputs")

    page.click("#wfe-save")
    expect(page.locator("#wfe-status")).to_have_text("saved")
    text = path.read_text()
    assert "# Hand-written: the team's greeting. Keep these comments." in text
    assert "# who is greeted" in text
    saved = yaml.safe_load(text)
    assert saved["outputs"] == {"said": "${{ steps.hello.output.message }}"}
    assert saved["triggers"] == [
        {"name": "nightly", "cron": "0 2 * * *", "timezone": "Europe/Paris"},
        {"name": "hook", "webhook": "notes/new", "secret": "NOTES_HOOK"}]
    result = CliRunner().invoke(main, ["workflows", "validate", str(path)])
    assert result.exit_code == 0, result.output

    # A run has the outputs the editor set.
    def reloaded() -> bool:
        entry = app.workflows.entries.get("notes")
        return entry is not None and bool(entry.triggers)
    eventually(reloaded, "the saved file loaded")
    run = app.workflows.start("notes", {})

    def succeeded() -> bool:
        return app.workflows.get_run(run.id).state == "succeeded"
    eventually(succeeded, "the run to succeed")
    assert app.workflows.get_run(run.id).outputs == {"said": "Hello, on call!"}
    page.context.close()

    # A viewer sees them, and cannot change them.
    viewer = sign_in(browser, url, "vic")
    viewer.goto(f"{url}/workflows/notes/edit")
    expect(viewer.locator("#wfe-status")).to_have_text("read-only")
    expect(viewer.locator("#wfe-panel input[name='output.said']")).to_be_disabled()
    expect(viewer.locator("#wfe-panel textarea[name='trigger.1']")).to_be_disabled()
    expect(viewer.locator("#wfe-add-trigger")).to_have_count(0)
    viewer.context.close()


def test_a_refused_add_keeps_its_error_when_the_panel_is_drawn_again(
        browser: Browser, editing: tuple[OmniApp, ConsoleModule]) -> None:
    """The panel's own refusal (a webhook with no secret's name) stays beside its field when
    a save's answer redraws the panel, and goes when the field is edited: on a loaded machine
    the answer to the change before it landed after the click and wiped it."""
    _app, module = editing
    url = module.url
    assert url is not None
    page = sign_in(browser, url, "ada")
    page.goto(f"{url}/workflows/notes/edit")
    expect(page.locator("#wfe-status")).to_have_text("saved")
    panel = page.locator("#wfe-panel")
    panel.locator("input[name=new-trigger]").fill("hook")
    panel.locator("select[name=new-trigger-kind]").select_option("webhook")
    panel.locator("input[name=new-trigger-value]").fill("notes/new")
    panel.locator("#wfe-add-trigger").click()
    secret_error = panel.locator(".wfe-triggers .wfe-field-error")
    expect(secret_error).to_contain_text("secret")
    # Another change redraws the panel once the validator has answered it.
    panel.locator("input[name=new-output]").fill("wrong")
    panel.locator("input[name=new-output-value]").fill("${{ steps.nope.output }}")
    panel.locator("#wfe-add-output").click()
    expect(page.locator("#wfe-problems")).to_contain_text("steps.nope is not a step")
    expect(panel.locator("input[name='output.wrong']")).to_be_visible()
    expect(secret_error).to_contain_text("secret")
    secret = panel.locator("input[name=new-trigger-secret]")
    expect(secret).to_have_attribute("aria-invalid", "true")
    # Edited, the field's note goes, and the trigger is added.
    panel.locator("input[name=new-trigger-secret]").fill("NOTES_HOOK")
    expect(secret_error).to_have_count(0)
    panel.locator("#wfe-add-trigger").click()
    expect(panel.locator("textarea[name='trigger.0']")).to_contain_text('"secret": "NOTES_HOOK"')
    expect(panel.locator(".wfe-field-error", has_text="secret")).to_have_count(0)
