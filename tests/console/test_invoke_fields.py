"""The invoke form made from a handler's input schema: a component's exports (componentize-qjs,
tests/sandbox/components/types.wit) get one field per WIT parameter, typed from the
signature, in Debian's chromium; the posted fields are checked by kind on the server and by
the component's own check after that, with the error shown beside the form."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from omnicore import OmniApp
from omnicore.console import ConsoleModule
from tests.browsers import off_thread, shot
from tests.component_fixtures import js_component
from tests.console.test_browser import running

__all__ = ["running"]  # the fixture, imported for the tests here


@pytest.fixture
def served(running: tuple[OmniApp, ConsoleModule]) -> tuple[OmniApp, ConsoleModule]:
    """test_browser's running app and console, serving the types component."""
    app, _ = running
    off_thread(lambda: app.plugins.load(js_component("types"), name="types"))
    return running


def _signed_in(browser: Browser, module: ConsoleModule) -> Page:
    assert module.console is not None and module.url is not None
    link = f"{module.url}/setup?token={module.console.auth.store.new_setup_link()}"
    page = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    page.goto(link)
    page.fill("input[name=name]", "ada")
    page.fill("input[name=password]", "lovelace-1815")
    page.fill("input[name=password2]", "lovelace-1815")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Overview")
    return page


def _invoke(page: Page) -> str:
    page.click("#invoke-form button[value=invoke]")
    return page.locator("#invoke-result pre").inner_text()


def test_a_component_is_invoked_through_fields_made_from_its_wit(
        browser: Browser, served: tuple[OmniApp, ConsoleModule]) -> None:
    app, module = served
    page = _signed_in(browser, module)
    page.goto(f"{module.url}/plugins/types")
    calls_before = app.plugins.get("types").stats.calls  # type: ignore[union-attr]
    form = page.locator("#invoke-form")
    expect(form.locator("select[name=format]")).to_have_value("fields")
    # The About card names the ABI and shows the WIT world, as `omnicore inspect` does.
    expect(page.locator("#plugin-abi")).to_have_text("component")
    page.click("#plugin-world summary")
    world = page.locator("#plugin-world pre").inner_text()
    assert "export add: func(a: u8, b: u8) -> u32;" in world
    assert "export test:types/shapes {" in world
    assert tuple(world.splitlines()) == app.plugins.get("types").world

    page.select_option("#invoke-form select[name=handler]", "add")
    args = form.locator("fieldset[data-args-for=add]")
    expect(args).to_be_visible()
    expect(form.locator("fieldset[data-args-for=greet]")).to_be_hidden()
    expect(form.locator("textarea[name=input]")).to_be_hidden()
    a = args.locator("input[name='arg.add.a']")
    assert (a.get_attribute("type"), a.get_attribute("min"), a.get_attribute("max")) == (
        "number", "0", "255")
    expect(args).to_contain_text("u8")
    a.fill("2")
    args.locator("input[name='arg.add.b']").fill("40")
    assert json.loads(_invoke(page)) == 42

    # An enum is a select, a bool a checkbox, the rest JSON; an interface's function too.
    page.select_option("#invoke-form select[name=handler]", "negate")
    page.locator("input[name='arg.negate.b']").check()
    assert json.loads(_invoke(page)) is False
    paint = "test:types/shapes#paint"
    page.select_option("#invoke-form select[name=handler]", paint)
    page.select_option(f"select[name='arg.{paint}.c']", "blue")
    page.fill(f"textarea[name='arg.{paint}.p']", '["read", "exec"]')
    assert json.loads(_invoke(page)) == ["blue", ["read", "exec"]]
    shot(page, "invoke-fields-1366")

    # What the fields say wrong comes back typed, beside the form: the component's own check.
    page.fill(f"textarea[name='arg.{paint}.p']", '["fly"]')
    page.click("#invoke-form button[value=invoke]")
    expect(page.locator("#invoke-result .badge")).to_have_text("InvalidInput")
    expect(page.locator("#invoke-result pre")).to_contain_text("p[0]")

    # The JSON textarea is still there for whoever prefers it.
    page.select_option("#invoke-form select[name=format]", "json")
    expect(form.locator("textarea[name=input]")).to_be_visible()
    page.select_option("#invoke-form select[name=handler]", "greet")
    page.fill("textarea[name=input]", '["Ada"]')
    assert json.loads(_invoke(page)) == "Hello, Ada!"
    # Five calls, the refused one counted as an InvalidInput error.
    stats = app.plugins.get("types").stats
    assert stats is not None and stats.calls == calls_before + 5
    assert stats.errors_by_type == {"InvalidInput": 1}

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{module.url}/plugins/types")
    page.select_option("#invoke-form select[name=handler]", paint)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot(page, "invoke-fields-390")


def test_a_refresh_of_the_page_keeps_the_handler_picked_and_its_fields(
        browser: Browser, served: tuple[OmniApp, ConsoleModule]) -> None:
    """The page is drawn anew when a figure's version moves (a plugin swapped, its optimized
    code in): the invoke form went back to its first handler, the fields being filled hidden
    (a loaded clean-clone CI run: the fieldset shown, then not visible at the next fill)."""
    _, module = served
    page = _signed_in(browser, module)
    page.goto(f"{module.url}/plugins/types")
    form = page.locator("#invoke-form")
    page.select_option("#invoke-form select[name=handler]", "add")
    form.locator("input[name='arg.add.a']").fill("2")
    page.evaluate("document.activeElement.blur()")  # (a refresh waits while one types)
    page.evaluate("document.getElementById('invoke-form').dataset.old = '1'")
    page.evaluate("refresh()")  # what a moved version calls: <main> fetched and swapped
    expect(page.locator("#invoke-form[data-old]")).to_have_count(0)  # (drawn anew, and:)
    expect(form.locator("select[name=handler]")).to_have_value("add")
    args = form.locator("fieldset[data-args-for=add]")
    expect(args).to_be_visible()
    expect(args.locator("input[name='arg.add.a']")).to_have_value("2")
    args.locator("input[name='arg.add.b']").fill("40")
    assert json.loads(_invoke(page)) == 42


def test_posted_fields_are_checked_by_kind_on_the_server(
        browser: Browser, served: tuple[OmniApp, ConsoleModule]) -> None:
    # Straight to the server, past the browser's own min/max checks.
    app, module = served
    page = _signed_in(browser, module)
    page.goto(f"{module.url}/plugins/types")
    csrf = page.locator("#invoke-form input[name=csrf]").get_attribute("value")
    assert csrf

    def post(**fields: str) -> str:
        answer = page.request.post(f"{module.url}/plugins/types", form={
            "csrf": csrf, "action": "invoke", "format": "fields", **fields})
        return re.sub(r"\s+", " ", html.unescape(answer.text()))

    assert "argument 'a' must be an integer" in post(handler="add", **{
        "arg.add.a": "two", "arg.add.b": "1"})
    assert "expected a u8 (0..255)" in post(handler="add", **{
        "arg.add.a": "300", "arg.add.b": "1"})
    assert "argument 'x' must be a number" in post(handler="half", **{"arg.half.x": "1e999"})
    assert "argument 'p' must be JSON" in post(handler="test:types/shapes#paint", **{
        "arg.test:types/shapes#paint.c": "red", "arg.test:types/shapes#paint.p": "[oops"})
    # An option left empty is none.
    assert "null" in post(handler="maybe-len", **{"arg.maybe-len.x": ""})
    assert app.plugins.get("types").stats.calls >= 1  # type: ignore[union-attr]


def test_a_core_module_has_its_abi_and_no_world(tmp_path: Path) -> None:
    from omnicore.plugins.host import PluginHost
    from tests.host_fixtures import echo_wasm

    with PluginHost() as host:
        native = host.load(echo_wasm("echo"))
        component = host.load(js_component("types"), name="types")
    assert (native.abi, native.world) == ("1", ())
    assert component.abi == "component"
    assert "export greet: func(name: string) -> string;" in component.world
