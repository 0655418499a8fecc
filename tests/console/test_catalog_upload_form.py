"""The console's HTML upload form (``POST /plugins/upload``, multipart, signed in through the
login form) publishes into the plugin catalog as the REST route does
(tests/console/test_catalog_upload.py): uploaded on one host's page, served by every host of
the store, written to no folder, recorded as the user who uploaded it. Two real hosts with
consoles on one PostgreSQL; and each refusal of the form: no CSRF token, a viewer, no file,
bytes that are no module, a bad file name, a body over the cap — nothing published by any."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnicore import OmniApp
from omnicore.console import ConsoleModule
from omnicore.errors import PluginNotFound
from tests.console.conftest import PASSWORD
from tests.host_fixtures import echo_wasm
from tests.waiting import eventually

Started = tuple[OmniApp, httpx.Client, str]


def serves(app: OmniApp, name: str, version: str) -> bool:
    try:
        return app.plugins.call(name, "version", b"") == version.encode()
    except Exception:
        return False


@pytest.fixture
def consoles(tmp_path: Path, module_cache: Path, pg_url: str
             ) -> Iterator[Callable[..., Started]]:
    """``consoles(user=..., **console)``: a host on the test PostgreSQL with its console, and
    a browser session signed in through the login form as ``user`` (with its CSRF token)."""
    started: list[tuple[OmniApp, httpx.Client]] = []

    def start(user: str = "admin", **console: Any) -> Started:
        home = tmp_path / f"host{len(started)}"
        (home / "plugins").mkdir(parents=True)
        app = OmniApp("upload-form-test", overrides={
            "data_dir": str(home / "data"), "plugins_dir": str(home / "plugins"),
            "storage": {"url": pg_url}, "sandbox": {"cache_dir": str(module_cache)},
            "catalog": {"poll_s": 0.05}, "console": {"port": 0, **console}},
            environ={}, entry_points=False)
        module = ConsoleModule()
        app.add_module(module)
        app.start()
        assert module.console is not None and module.url is not None
        store = module.console.auth.store
        if store.get(user) is None:
            store.add(user, PASSWORD, "admin" if user == "admin" else "viewer")
        browser = httpx.Client(base_url=module.url, timeout=60)
        started.append((app, browser))
        browser.get("/login")
        r = browser.post("/login", data={"name": user, "password": PASSWORD,
                                         "csrf": browser.cookies["omnicore_login_csrf"]})
        assert r.status_code == 303, r.text
        return app, browser, browser.get("/api/v1/me").json()["csrf"]

    yield start
    for app, browser in started:
        browser.close()
        if app.state.value == "running":
            app.stop()


def post_form(browser: httpx.Client, csrf: str | None, filename: str | None, data: bytes,
              **fields: str) -> httpx.Response:
    form = {**({"csrf": csrf} if csrf is not None else {}), **fields}
    files = {"file": (filename, bytes(data), "application/wasm")} if filename is not None else None
    return browser.post("/plugins/upload", data=form, files=files)


def catalog_names(browser: httpx.Client) -> list[str]:
    return [i["name"] for i in browser.get("/api/v1/catalog").json()["items"]]


def test_the_upload_form_publishes_to_the_catalog_and_every_host_serves_it(
        consoles: Any) -> None:
    a, browser, csrf = consoles()
    b, _, _ = consoles()
    # The form says where the file goes.
    hint = browser.get("/plugins").text
    assert "published to the plugin catalog" in hint and "written into the plugins" not in hint
    r = post_form(browser, csrf, "shared.wasm", echo_wasm("shared", "1.0.0"))
    assert r.status_code == 303, r.text
    assert r.headers["location"] == "/plugins/shared?done=uploaded"
    assert serves(a, "shared", "1.0.0")  # served here when the answer came back
    eventually(lambda: serves(b, "shared", "1.0.0"), "the other host serving it")
    page = browser.get(r.headers["location"])
    assert page.status_code == 200 and "Uploaded." in page.text
    # In the catalog, by the user who signed in; in no host's folder.
    entry = browser.get("/api/v1/catalog/shared").json()
    assert entry["version"]["number"] == 1 and entry["version"]["published_by"] == "admin"
    for app in (a, b):
        assert list(Path(app.config.plugins_dir).iterdir()) == []
    # The form again with the same name (replace unticked: the catalog keeps versions, so
    # it is the next one, not a clash with a file) is served by every host.
    r = post_form(browser, csrf, "shared.wasm", echo_wasm("shared", "2.0.0"))
    assert r.status_code == 303, r.text
    assert serves(a, "shared", "2.0.0")
    eventually(lambda: serves(b, "shared", "2.0.0"), "version 2 on the other host")
    versions = browser.get("/api/v1/catalog/shared").json()["versions"]
    assert [v["number"] for v in versions] == [2, 1]
    audit = browser.get("/api/v1/audit", params={"verb": "catalog."}).json()["items"]
    assert [e["verb"] for e in audit] == ["catalog.publish", "catalog.publish"]
    assert {e["user"] for e in audit} == {"admin"}


def test_the_upload_forms_refusals_publish_nothing(consoles: Any) -> None:
    app, browser, csrf = consoles(max_upload_bytes=64 * 1024)
    module = echo_wasm("refused", "1.0.0")
    # No CSRF token, or another one: refused before the file is looked at.
    assert post_form(browser, None, "refused.wasm", module).status_code == 403
    assert post_form(browser, "x" * len(csrf), "refused.wasm", module).status_code == 403
    # No file chosen.
    r = post_form(browser, csrf, None, b"", replace="on")
    assert r.status_code == 422 and "choose a .wasm file" in r.text
    # Bytes that are no module, a module that does not compile, a name with a folder: the
    # page again, with the reason shown in the form's alert.
    for filename, data, why in (
            ("junk.wasm", b"hello", "is not a WebAssembly module"),
            ("broken.wasm", b"\0asm\x01\0\0\0garbage", "broken.wasm"),
            ("../up.wasm", module, "is not allowed")):
        r = post_form(browser, csrf, filename, data)
        assert r.status_code == 422, (filename, r.text)
        assert 'role="alert"' in r.text and why in r.text, filename
    # Over console.max_upload_bytes: refused, announced or not.
    big = bytes(module) + b"\0" * (128 * 1024)
    assert post_form(browser, csrf, "big.wasm", big).status_code == 413
    # A viewer signed in through the form may look, not upload.
    _, viewer, viewer_csrf = consoles(user="viewer")
    assert post_form(viewer, viewer_csrf, "refused.wasm", module).status_code == 403
    assert catalog_names(browser) == []
    assert list(Path(app.config.plugins_dir).iterdir()) == []
    with pytest.raises(PluginNotFound):
        app.plugins.get("refused")
