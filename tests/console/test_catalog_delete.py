"""A plugin the catalog serves is not the console's to delete (issue 61, item 6): the page
offers no Delete for it and names the command that takes it out of the catalog; the API's
refusal names that command too. A publish's answer says how many hosts run to load it."""

from __future__ import annotations

import base64

import httpx

from tests.console.conftest import Host
from tests.host_fixtures import echo_wasm
from tests.waiting import eventually


def test_delete_of_a_catalog_plugin_names_plugins_remove(host: Host,
                                                         admin: httpx.Client) -> None:
    r = admin.put("/api/v1/catalog/echo-cat", json={
        "module": base64.b64encode(echo_wasm("echo-cat", "1.0.0")).decode()})
    assert r.status_code == 201, r.text
    assert r.json()["hosts_live"] == 1  # this host: the publish's answer says who loads it
    eventually(lambda: "echo-cat" in host.app.plugins
               and host.app.plugins.get("echo-cat").origin == "catalog")
    refused = admin.delete("/api/v1/plugins/echo-cat")
    assert refused.status_code == 409, refused.text
    error = refused.json()["error"]
    assert error["type"] == "FromCatalog"
    assert "omnicore plugins remove echo-cat" in error["message"]
    assert "echo-cat" in host.app.plugins  # nothing was deleted
    browser, _ = host.browser_session()
    page = browser.get("/plugins/echo-cat").text
    assert 'value="delete"' not in page and "omnicore plugins remove echo-cat" in page
    # A folder's plugin keeps its Delete button.
    assert 'value="delete"' in browser.get("/plugins/greeter-rust").text
