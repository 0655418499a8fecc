"""The plugin catalog on one host (SQLite): publish, converge, versions, rollback, the folder
as the layer beneath, grants that stay the operator's, and the bad input a publish refuses
(issue 44, items 1, 2 and 7). Hosts sharing PostgreSQL: tests/cluster/test_catalog_cluster.py.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import omnicore.plugins.linking as linking_mod
from omnicore.app import OmniApp
from omnicore.errors import InvalidModule, PluginNotFound
from omnicore.plugins.catalog import BadPublish, Catalog, ModuleTooLarge, app_catalog
from omnicore.plugins.convergence import CatalogFollower
from omnicore.storage import SQLiteStorage
from tests.host_fixtures import config_wasm, echo_wasm, in_flight, write
from tests.plugins.catalog_fixtures import answers, digest, serves
from tests.waiting import eventually, seconds_until


@pytest.fixture
def cli_catalog(tmp_path: Path, start_host: Any) -> Iterator[Callable[[OmniApp], Catalog]]:
    """The catalog through a connection of its own, as ``omnicore plugins publish`` beside a
    running host has it: the host hears of a change only by the change sequence."""
    stores: list[SQLiteStorage] = []

    def open_for(app: OmniApp) -> Catalog:
        store = SQLiteStorage(tmp_path / "data" / "omnicore.db")
        stores.append(store)
        return app_catalog(lambda: store, app.plugins.published.check_module, app.config.catalog)

    yield open_for
    for store in stores:
        store.close()


# ---- publish and converge ---------------------------------------------------------------

def test_a_published_plugin_is_loaded_from_the_catalog(start_host: Any,
                                                       cli_catalog: Any) -> None:
    app = start_host()
    catalog = cli_catalog(app)
    wasm = echo_wasm("greeter", "1.0.0")
    version, made = catalog.publish(wasm, by="ada")
    assert made and version.name == "greeter" and version.number == 1
    assert version.digest == digest(wasm) and version.published_by == "ada"
    took = seconds_until(lambda: serves(app, "greeter", "1.0.0"))
    assert took < 2.0, took
    info = app.plugins.get("greeter")
    assert info.origin == "catalog" and f"sha256:{info.sha256}" == version.digest
    cached = app.config.data_dir / "catalog" / f"{info.sha256}.wasm"
    named = app.config.data_dir / "catalog" / "plugins" / "greeter@1.wasm"
    assert cached.read_bytes() == wasm  # verified, by its digest
    assert info.source == str(named) and named.read_bytes() == wasm
    status = app.plugins.published.follower.status()
    assert status["greeter"]["digest"] == status["greeter"]["wanted"] == version.digest
    # The same module and sidecar again: no new version, nothing reloaded.
    again, made = catalog.publish(wasm, by="bob")
    assert not made and again.id == version.id


def test_a_new_version_swaps_in_while_calls_in_flight_finish_on_the_old(
        start_host: Any, cli_catalog: Any) -> None:
    # The slow call spins 200 million turns; at a load average of 20 that outlasted the
    # default 1 s deadline. It must outlast the swap, not a deadline.
    app = start_host(sandbox={"limits": {"timeout_ms": 60_000}})
    catalog = cli_catalog(app)
    catalog.publish(echo_wasm("slowpoke", "1.0.0"))
    eventually(lambda: serves(app, "slowpoke", "1.0.0"))
    answers: list[bytes] = []
    caller = threading.Thread(target=lambda: answers.append(
        app.plugins.call("slowpoke", "slow", bytes([200]))))
    caller.start()
    eventually(lambda: in_flight(app.plugins, "slowpoke"), "the slow call in flight",
               every=0.001)
    v2, _ = catalog.publish(echo_wasm("slowpoke", "2.0.0"), by="ada")
    eventually(lambda: serves(app, "slowpoke", "2.0.0"))
    caller.join(30)
    assert answers == [b"1.0.0"]  # the call that started on version 1 ended on it
    assert [v.number for v in catalog.versions("slowpoke")] == [2, 1]
    assert app.plugins.get("slowpoke").sha256 == v2.digest.removeprefix("sha256:")


def test_rollback_to_the_previous_version_and_to_a_named_one(start_host: Any,
                                                             cli_catalog: Any) -> None:
    app = start_host()
    catalog = cli_catalog(app)
    for v in ("1.0.0", "2.0.0", "3.0.0"):
        catalog.publish(echo_wasm("rolling", v))
    eventually(lambda: serves(app, "rolling", "3.0.0"))
    back = catalog.rollback("rolling", by="ops")
    assert back.version is not None and back.version.number == 2 and back.updated_by == "ops"
    eventually(lambda: serves(app, "rolling", "2.0.0"))
    first = catalog.versions("rolling")[-1]
    catalog.rollback("rolling", first.digest[:15])  # a prefix of its digest
    eventually(lambda: serves(app, "rolling", "1.0.0"))
    catalog.rollback("rolling", "v3")
    eventually(lambda: serves(app, "rolling", "3.0.0"))
    with pytest.raises(PluginNotFound, match="no version"):
        catalog.rollback("rolling", "sha256:ffffff")
    with pytest.raises(PluginNotFound, match="no plugin 'nope' in the catalog"):
        catalog.rollback("nope")


def test_the_catalog_wins_over_the_folder_and_the_folder_serves_again_when_removed(
        start_host: Any, tmp_path: Path, cli_catalog: Any) -> None:
    write(tmp_path / "plugins", "shared.wasm", echo_wasm("shared", "folder"))
    app = start_host()
    assert serves(app, "shared", "folder") and app.plugins.get("shared").origin == "file"
    catalog = cli_catalog(app)
    catalog.publish(echo_wasm("shared", "catalog"))
    eventually(lambda: serves(app, "shared", "catalog"))
    info = app.plugins.get("shared")
    assert info.origin == "catalog" and info.shadows == str(tmp_path / "plugins" / "shared.wasm")
    assert len(app.plugins) == 1  # the folder's file is beneath, not a second plugin
    # An edit of the file beneath does not take the name back from the catalog.
    write(tmp_path / "plugins", "shared.wasm", echo_wasm("shared", "folder-2"))
    app.plugins.folder.sync()
    assert serves(app, "shared", "catalog")
    catalog.remove("shared", by="ops")
    eventually(lambda: serves(app, "shared", "folder-2"))
    assert app.plugins.get("shared").origin == "file"


def test_a_snapshot_taken_while_the_catalog_takes_a_name_is_never_half_old(
        start_host: Any, tmp_path: Path, cli_catalog: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # A link is held open at a gate; what plugins.get() says meanwhile names the module
    # serving and where it came from together: the old pair until the link commits, the new
    # one after. Both ways: the catalog's version over the file, and the file back under it.
    folder_wasm, catalog_wasm = echo_wasm("shared", "folder"), echo_wasm("shared", "catalog")
    write(tmp_path / "plugins", "shared.wasm", folder_wasm)
    app = start_host()
    linking, go = threading.Event(), threading.Event()
    real_link = linking_mod._link

    def gated(link: Any, name: str) -> Any:
        if name == "shared" and not go.is_set():
            linking.set()
            assert go.wait(60), "the test never opened the gate"
        return real_link(link, name)

    monkeypatch.setattr(linking_mod, "_link", gated)
    catalog = cli_catalog(app)
    folder = ("file", digest(folder_wasm), str(tmp_path / "plugins" / "shared.wasm"))
    published = ("catalog", digest(catalog_wasm))

    def snapshot() -> tuple[str, ...]:
        info = app.plugins.get("shared")
        return (info.origin, f"sha256:{info.sha256}", *([info.source] if info.origin ==
                                                            "file" else []))

    for change, before, after in ((lambda: catalog.publish(catalog_wasm), folder, published),
                                  (lambda: catalog.remove("shared", by="ops"), published,
                                   folder)):
        linking.clear()
        go.clear()
        change()
        assert linking.wait(60), "the link never started"
        for _ in range(20):
            assert snapshot() == before
        go.set()
        eventually(lambda after=after: snapshot() == after)  # type: ignore[misc]
    assert serves(app, "shared", "folder")


def test_a_withdraw_racing_an_adopt_leaves_no_version_named_as_serving(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An adopt holds the name (its link held at a gate) while the catalog drops the name:
    the withdraw waits for it, then unloads what it made. Nothing is then named as serving
    the name (``published.served``): the withdraw once forgot it before it waited, and the
    adopt, finishing meanwhile, named its version as serving a plugin that was gone."""
    import hashlib

    from omnicore.plugins.host import PluginHost
    from omnicore.plugins.published import Published

    def version(number: int) -> Published:
        wasm = echo_wasm("shared", f"{number}.0.0")
        path = tmp_path / f"shared@{number}.wasm"
        path.write_bytes(wasm)
        return Published("shared", "sha256:" + hashlib.sha256(wasm).hexdigest(), number, path)

    linking, go, unloading = threading.Event(), threading.Event(), threading.Event()
    real_link = linking_mod._link

    def gated(link: Any, name: str) -> Any:
        # (the adopt's own link: not a tier-up's of the first version, on a thread of its own)
        if threading.current_thread().name == "adopt" and not go.is_set():
            linking.set()
            assert go.wait(60), "the test never opened the gate"
        return real_link(link, name)

    with PluginHost(data_dir=tmp_path / "data") as host:
        published = host.published
        first, second = version(1), version(2)
        published.adopt(first)
        assert published.served("shared") == first
        monkeypatch.setattr(linking_mod, "_link", gated)
        real_unload = published._unload

        def unload(name: str, why: str) -> None:
            unloading.set()  # (it waits for the name's lock, held by the adopt)
            real_unload(name, why)

        monkeypatch.setattr(published, "_unload", unload)
        errors: list[BaseException] = []

        def run(name: str, f: Callable[[], object]) -> threading.Thread:
            def body() -> None:
                try:
                    f()
                except BaseException as exc:
                    errors.append(exc)

            t = threading.Thread(target=body, name=name)
            t.start()
            return t

        adopting = run("adopt", lambda: published.adopt(second))
        assert linking.wait(60), "the link never started"
        withdrawing = run("withdraw", lambda: published.withdraw("shared"))
        assert unloading.wait(60), "the withdraw never came to the unload"
        go.set()
        adopting.join(60)
        withdrawing.join(60)
        assert not errors and not adopting.is_alive() and not withdrawing.is_alive()
        assert [info.name for info in host] == []
        assert published.served("shared") is None


def test_a_host_started_after_a_publish_loads_it_before_its_folder(
        start_host: Any, tmp_path: Path) -> None:
    """A host that was down during a publish catches up at start, and its folder's file of
    that name stays beneath."""
    write(tmp_path / "plugins", "late.wasm", echo_wasm("late", "folder"))
    store = SQLiteStorage(tmp_path / "data" / "omnicore.db")
    try:
        from omnicore.config.schema import CatalogConfig
        from omnicore.plugins.host import PluginHost

        checker = PluginHost()
        try:
            app_catalog(lambda: store, checker.published.check_module, CatalogConfig()).publish(
                echo_wasm("late", "published"))
        finally:
            checker.close()
    finally:
        store.close()
    app = start_host()
    assert serves(app, "late", "published")  # at start: no window serving the folder's
    assert app.plugins.get("late").shadows is not None


def test_the_published_sidecar_exposes_mcp_tools_and_configures(start_host: Any,
                                                                 cli_catalog: Any) -> None:
    from omnicore.mcp.expose import handler_tools

    app = start_host()
    catalog = cli_catalog(app)
    catalog.publish(config_wasm("tooled"), sidecar={
        "grants": ["config"], "config": {"k": "published"}, "mcp": {"expose": ["get"]}})
    eventually(lambda: "tooled" in app.plugins
               and app.plugins.get("tooled").state == "needs-grant")
    app.plugins.grant("tooled", "config", {}, persist=True)
    eventually(lambda: answers(app, "tooled", "get", b"k") == b"published")
    (tool,) = handler_tools(app, "tooled")
    assert tool.handler == "get" and tool.exposed_by == "sidecar"
    # The sidecar beside the name's file holds no grants: they were requests.
    beside = app.config.data_dir / "catalog" / "plugins" / "tooled@1.yaml"
    assert "grants" not in beside.read_text() and "published" in beside.read_text()
    catalog.remove("tooled")
    # Unloaded first (calls in flight finish), then the files go.
    eventually(lambda: "tooled" not in app.plugins and not beside.exists())


# ---- a version that cannot serve here ---------------------------------------------------

def test_a_version_lacking_a_grant_keeps_the_old_one_serving_until_granted(
        start_host: Any, cli_catalog: Any) -> None:
    app = start_host()
    catalog = cli_catalog(app)
    catalog.publish(echo_wasm("conf", "1.0.0"))
    eventually(lambda: serves(app, "conf", "1.0.0"))
    # Version 2 imports omnicore:config and its sidecar asks for it: a request, not a grant.
    v2, _ = catalog.publish(config_wasm("conf"), sidecar={"grants": ["config"],
                                                          "config": {"k": "from-catalog"}})
    follower = app.plugins.published.follower
    assert follower is not None
    eventually(lambda: "error" in follower.status().get("conf", {}))
    status = follower.status()["conf"]
    assert status["wanted"] == v2.digest and status["digest"] != v2.digest
    assert "config" in status["error"]
    assert serves(app, "conf", "1.0.0")  # the old version still serves
    assert "still serving" in (app.plugins.get("conf").last_error or "")
    # The operator grants it (every host of the database applies it): version 2 serves.
    app.plugins.grant("conf", "config", {}, persist=True)
    took = seconds_until(lambda: answers(app, "conf", "get", b"k") == b"from-catalog")
    assert took < 2.0, took  # at once, not after the retry's pause
    assert "error" not in follower.status()["conf"]
    assert app.plugins.get("conf").sha256 == v2.digest.removeprefix("sha256:")


def test_a_new_plugin_whose_grants_are_only_requested_waits_for_the_operator(
        start_host: Any, cli_catalog: Any) -> None:
    app = start_host()
    catalog = cli_catalog(app)
    catalog.publish(config_wasm("asker"), sidecar={"grants": {"config": {}}})
    eventually(lambda: "asker" in app.plugins)
    eventually(lambda: app.plugins.get("asker").state == "needs-grant")
    assert app.plugins.get("asker").missing == ("config",)


def test_bytes_in_the_store_that_are_not_the_digest_are_never_loaded(
        start_host: Any, tmp_path: Path, cli_catalog: Any) -> None:
    app = start_host()
    catalog = cli_catalog(app)
    good = echo_wasm("tampered", "1.0.0")
    catalog.publish(good)
    eventually(lambda: serves(app, "tampered", "1.0.0"))
    follower = app.plugins.published.follower
    assert follower is not None
    follower.stop()  # caught up by hand below, after the damage
    v2, _ = catalog.publish(echo_wasm("tampered", "2.0.0"))
    import sqlite3

    # Someone changes the stored chunk behind the catalog's back.
    with sqlite3.connect(tmp_path / "data" / "omnicore.db") as db:
        db.execute("UPDATE plugin_chunks SET data=? WHERE digest=?", (good, v2.digest))
    follower.catch_up()
    status = follower.status()["tampered"]
    assert status["wanted"] == v2.digest and "not that module" in status["error"]
    assert serves(app, "tampered", "1.0.0")  # never loaded: the old version serves
    cache = app.config.data_dir / "catalog"
    assert not (cache / f"{v2.digest[7:]}.wasm").exists()
    assert not list(cache.glob(".*.part"))  # nothing half-kept


# ---- publishing: what is refused before anything is stored ----------------------------------

def test_a_publish_refuses_bad_input_and_stores_nothing(start_host: Any,
                                                        cli_catalog: Any) -> None:
    app = start_host()
    catalog = cli_catalog(app)
    small = Catalog(lambda: app.storage.catalog, check=app.plugins.published.check_module,
                    max_bytes=500, keep=5)
    wasm = echo_wasm("bad", "1.0.0")
    with pytest.raises(ModuleTooLarge, match=r"at most 500 \(catalog.max_module_bytes\)"):
        small.publish(wasm)
    with pytest.raises(BadPublish, match="cut short or altered"):
        catalog.publish(wasm[:-10], digest=digest(wasm))  # a truncated upload
    with pytest.raises(BadPublish, match="empty"):
        catalog.publish(b"")
    with pytest.raises(InvalidModule):
        catalog.publish(b"\0asm\x01\0\0\0garbage")
    with pytest.raises(BadPublish, match="a catalog name"):
        catalog.publish(wasm, name="../etc")
    with pytest.raises(BadPublish, match="unknown sidecar key 'grnats'"):
        catalog.publish(wasm, sidecar={"grnats": ["kv"]})
    with pytest.raises(BadPublish, match="limits"):
        catalog.publish(wasm, sidecar={"limits": {"timeout_ms": "soon"}})
    assert catalog.entries() == [] and app.storage.catalog.last_seq() == 0
    ok, _ = catalog.publish(wasm, digest=digest(wasm).upper().replace("SHA256", "sha256"))
    assert ok.name == "bad"
    renamed, _ = catalog.publish(wasm, name="bad-two")
    assert renamed.name == "bad-two"
    eventually(lambda: serves(app, "bad-two", "1.0.0"))


def test_a_follower_refuses_a_malformed_digest(tmp_path: Path) -> None:
    follower = CatalogFollower(lambda: None, None, tmp_path)  # type: ignore[arg-type,return-value]
    with pytest.raises(Exception, match="malformed digest"):
        follower.fetch("sha256:../../etc/passwd", 10)


# ---- work goes where the plugin is --------------------------------------------------------

def test_a_job_waits_for_its_plugin_instead_of_dying(start_host: Any, cli_catalog: Any) -> None:
    app = start_host(capabilities={"jobs": {"poll_s": 0.05, "backoff_ms": 10}})
    job = app.jobs.enqueue("later", "echo", b"hi")
    time.sleep(0.5)
    waiting = app.jobs.get(job)
    assert waiting is not None and waiting.state == "queued" and waiting.attempts == 0
    cli_catalog(app).publish(echo_wasm("later", "1.0.0"))
    eventually(lambda: app.jobs.get(job).state == "succeeded")
    done = app.jobs.get(job)
    assert done is not None and done.attempts == 1 and done.result == b"hi"
