"""The console's plugin upload publishes into the plugin catalog when the app's hosts share a
store (``catalog.uploads``, issue 44 item 1): uploaded on one host, served by every host,
written to no host's folder. Two real hosts with consoles on one PostgreSQL; one on SQLite
with ``catalog.uploads: catalog``; refusals."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnicore import OmniApp
from omnicore.console import ConsoleModule
from tests.console.conftest import PASSWORD, ROOT
from tests.host_fixtures import echo_wasm
from tests.waiting import eventually

GREETER = ROOT / "build" / "plugins" / "greeter-rust.wasm"


def serves(app: OmniApp, name: str, version: str) -> bool:
    try:
        return app.plugins.call(name, "version", b"") == version.encode()
    except Exception:
        return False


@pytest.fixture
def consoles(tmp_path: Path, module_cache: Path
             ) -> Iterator[Callable[..., tuple[OmniApp, httpx.Client]]]:
    started: list[tuple[OmniApp, httpx.Client]] = []

    def start(**overrides: Any) -> tuple[OmniApp, httpx.Client]:
        home = tmp_path / f"host{len(started)}"
        (home / "plugins").mkdir(parents=True)
        app = OmniApp("upload-test", overrides={
            "data_dir": str(home / "data"), "plugins_dir": str(home / "plugins"),
            "sandbox": {"cache_dir": str(module_cache)}, "catalog": {"poll_s": 0.05},
            "console": {"port": 0}, **overrides}, environ={}, entry_points=False)
        module = ConsoleModule()
        app.add_module(module)
        app.start()
        assert module.console is not None and module.url is not None
        store = module.console.auth.store
        if store.get("admin") is None:
            store.add("admin", PASSWORD, "admin")
        token, _ = store.new_token("admin", "tests")
        client = httpx.Client(base_url=module.url, timeout=60,
                              headers={"Authorization": f"Bearer {token}"})
        started.append((app, client))
        return app, client

    yield start
    for app, client in started:
        client.close()
        if app.state.value == "running":
            app.stop()


def upload(client: httpx.Client, filename: str, data: bytes) -> httpx.Response:
    return client.post("/api/v1/plugins", params={"filename": filename}, content=bytes(data),
                       headers={"Content-Type": "application/wasm"})


def test_an_upload_on_one_host_is_served_by_every_host_of_the_store(
        consoles: Any, pg_url: str) -> None:
    a, client_a = consoles(storage={"url": pg_url})
    b, _ = consoles(storage={"url": pg_url})
    r = upload(client_a, "shared.wasm", echo_wasm("shared", "1.0.0"))
    assert r.status_code == 201, r.text
    doc = r.json()
    assert doc["name"] == "shared" and doc["origin"] == "catalog" and doc["state"] == "loaded"
    assert serves(a, "shared", "1.0.0")  # served here when the answer came back
    eventually(lambda: serves(b, "shared", "1.0.0"))
    # In the catalog, by the uploader; in no host's folder.
    entry = client_a.get("/api/v1/catalog/shared").json()
    assert entry["version"]["number"] == 1 and entry["version"]["published_by"] == "admin"
    for app in (a, b):
        assert list(Path(app.config.plugins_dir).iterdir()) == []
    # A second upload of the name is its next version, on every host.
    r = upload(client_a, "shared.wasm", echo_wasm("shared", "2.0.0"))
    assert r.status_code == 201, r.text
    assert serves(a, "shared", "2.0.0")
    eventually(lambda: serves(b, "shared", "2.0.0"))
    versions = client_a.get("/api/v1/catalog/shared").json()["versions"]
    assert [v["number"] for v in versions] == [2, 1]
    audit = client_a.get("/api/v1/audit", params={"verb": "catalog."}).json()["items"]
    assert [a["verb"] for a in audit] == ["catalog.publish", "catalog.publish"]


def test_catalog_uploads_on_one_host_publish_and_a_bad_upload_stores_nothing(
        consoles: Any) -> None:
    app, client = consoles(catalog={"poll_s": 0.05, "uploads": "catalog"})
    r = upload(client, "greeter-rust.wasm", GREETER.read_bytes())
    assert r.status_code == 201, r.text
    assert r.json()["origin"] == "catalog"
    # Refused before anything is stored: not wasm, a bad name, a module that does not compile.
    assert upload(client, "junk.wasm", b"hello").status_code == 422
    assert upload(client, "../x.wasm", echo_wasm("x")).status_code == 422
    broken = upload(client, "broken.wasm", b"\0asm\x01\0\0\0garbage")
    assert broken.status_code == 422, broken.text
    names = [i["name"] for i in client.get("/api/v1/catalog").json()["items"]]
    assert names == ["greeter-rust"]
    assert list(Path(app.config.plugins_dir).iterdir()) == []


def test_catalog_uploads_on_a_host_that_does_not_follow_the_catalog_are_refused(
        consoles: Any) -> None:
    _app, client = consoles(catalog={"follow": False, "uploads": "catalog"})
    r = upload(client, "lonely.wasm", echo_wasm("lonely"))
    assert r.status_code == 409 and r.json()["error"]["type"] == "NotFollowingCatalog"
    assert "catalog.follow" in r.json()["error"]["message"]
    assert client.get("/api/v1/catalog").json()["items"] == []  # nothing published


def test_auto_on_a_host_of_its_own_keeps_writing_its_folder(consoles: Any) -> None:
    app, client = consoles()
    hint = client.get("/plugins").text  # the form says where the file goes
    assert "written into the plugins folder" in hint and "plugin catalog" not in hint
    r = upload(client, "mine.wasm", echo_wasm("mine"))
    assert r.status_code == 201 and r.json()["origin"] == "file"
    assert (Path(app.config.plugins_dir) / "mine.wasm").is_file()
