"""The operator's settings in the database (omnicore.plugins.operator): how they layer over a
plugin's sidecar, how a running app follows changes it did not make, and that a revoke holds
on every path that could keep a capability alive."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.app import OmniApp
from omnicore.errors import ConfigError, NeedsGrant, PluginError
from omnicore.plugins.operator import overlay
from omnicore.plugins.sidecar import Sidecar
from omnicore.storage import SQLiteStorage
from omnicore.storage.settings_rows import PluginSettingsRows
from tests.host_fixtures import config_wasm, write
from tests.waiting import eventually, seconds_until

#: The poll period of the change sequence (1 s) plus slack for a loaded machine.
FOLLOWED_WITHIN_S = 1.0 + 1.5


def answer(app: OmniApp, key: bytes = b"k") -> str:
    try:
        return app.plugins.call("conf", "get", key).decode()
    except PluginError as exc:
        return type(exc).__name__


@pytest.fixture
def appdir(tmp_path: Path) -> Path:
    (tmp_path / "plugins").mkdir()
    write(tmp_path / "plugins", "conf.wasm", config_wasm("conf"))
    return tmp_path


@pytest.fixture
def make(appdir: Path) -> Iterator[Callable[..., OmniApp]]:
    apps: list[OmniApp] = []

    def factory(**overrides: Any) -> OmniApp:
        over = {"data_dir": str(appdir / "data"), "plugins_dir": str(appdir / "plugins"),
                **overrides}
        app = OmniApp("settings-test", overrides=over, environ={}, entry_points=False)
        apps.append(app)
        app.start()
        return app

    yield factory
    for app in apps:
        if app.state.value == "running":
            app.stop()


@pytest.fixture
def cli_rows(appdir: Path) -> Iterator[PluginSettingsRows]:
    """The app's settings through a connection of its own, as an ``omnicore`` command beside
    the running host has it: changes made here reach the host only by the change sequence."""
    store = SQLiteStorage(appdir / "data" / "omnicore.db")
    yield store.plugin_settings
    store.close()


def put(rows: PluginSettingsRows, **keys: Any) -> None:
    rows.change("conf", lambda doc: {**doc, **keys}, by="cli", at=time.time())


# ---- layering ---------------------------------------------------------------------------

def test_the_database_layer_merges_grants_and_replaces_the_rest() -> None:
    side = Sidecar(path=Path("conf.yaml"), grants={"kv": {"max_keys": 5}, "config": {}},
                   config={"a": 1, "b": 2}, limits={"timeout_ms": 50}, enabled=False,
                   mcp_expose=("greet",))
    got = overlay(side, {"grants": {"config": False, "events": {"publish": ["x"]}},
                         "config": {"a": 9}, "enabled": True, "mcp": {"expose": []}}, "conf")
    assert got.grants == {"kv": {"max_keys": 5}, "config": None,
                          "events": {"publish": ["x"]}}
    assert got.config == {"a": 9}  # replaced, not merged: a key removed in the console goes
    assert got.limits == {"timeout_ms": 50} and got.enabled is True
    assert got.mcp_expose == ("greet",)  # patterns add to the file's; hidden there
    assert overlay(side, {"mcp": {"expose": ["a*", "greet"]}}, "conf").mcp_expose == (
        "greet", "a*")
    assert overlay(side, {}, "conf") is side


@pytest.mark.parametrize("doc, key", [
    ({"grant": ["kv"]}, "grant"), ({"config": [1]}, "config"),
    ({"limits": {"timeout_mss": 5}}, "timeout_ms"), ({"enabled": "yes"}, "enabled"),
    ({"grants": {"kv": 5}}, "kv"), ({"mcp": {"expose": "*"}}, "mcp")])
def test_a_bad_database_row_is_refused_naming_it(doc: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        overlay(Sidecar(), doc, "conf")
    assert "database" in str(err.value) and "'conf'" in str(err.value)
    assert key in str(err.value)


# ---- following --------------------------------------------------------------------------

def test_without_a_notification_the_poll_catches_up_on_postgresql(pg_url: str) -> None:
    """The NOTIFY is lost (the listening connection was down): the change sequence, polled,
    still brings every change, in order."""
    from omnicore.plugins.operator import OperatorSettings
    from omnicore.storage.postgres import PostgresStorage

    here, there = PostgresStorage(pg_url), PostgresStorage(pg_url)
    seen: list[tuple[str, frozenset[str]]] = []
    follower = OperatorSettings(lambda: here.plugin_settings)
    try:
        follower.follow(lambda plugin, caps: seen.append((plugin, caps)), lambda _wake: None)
        there.plugin_settings.change("a", lambda doc: {"grants": {"kv": {}}}, by=None, at=1.0)
        there.plugin_settings.change("b", lambda doc: {"enabled": False}, by=None, at=2.0)
        took = seconds_until(lambda: len(seen) == 2)
        assert took < FOLLOWED_WITHIN_S, took
        assert seen == [("a", frozenset({"kv"})), ("b", frozenset())]
        assert follower.doc("a") == {"grants": {"kv": {}}}
    finally:
        follower.stop()
        here.close()
        there.close()


def test_a_change_made_beside_the_running_host_is_applied_by_the_change_sequence(
        make: Callable[..., OmniApp], cli_rows: PluginSettingsRows, appdir: Path) -> None:
    app = make()
    assert answer(app) == "NeedsGrant"
    put(cli_rows, grants={"config": {}}, config={"k": "from-db"})
    took = seconds_until(lambda: answer(app) == "from-db")
    assert took < FOLLOWED_WITHIN_S, took
    put(cli_rows, limits={"max_output_bytes": 3})
    eventually(lambda: answer(app) == "OutputTooLarge")
    assert not list((appdir / "plugins").glob("conf.*ml"))  # the folder was not written
    app.stop()
    again = make()  # a restart keeps what the database holds
    assert again.plugins.get("conf").limits.max_output_bytes == 3  # type: ignore[union-attr]
    assert again.plugins.get("conf").config == {"k": "from-db"}


def test_a_revoke_beats_a_grant_this_host_made_for_itself(
        make: Callable[..., OmniApp], cli_rows: PluginSettingsRows) -> None:
    """A sibling of the revoke: the capability held by this process's own (unpersisted)
    grant, not by the database or the folder."""
    app = make()
    put(cli_rows, config={"k": "v"})
    eventually(lambda: app.plugins.get("conf").config == {"k": "v"})
    app.plugins.grant("conf", "config")  # this process only
    assert answer(app) == "v"
    put(cli_rows, grants={"config": False})
    eventually(lambda: answer(app) == "NeedsGrant")
    with pytest.raises(NeedsGrant):
        app.plugins.call("conf", "get", b"k")


def test_a_revoke_holds_when_the_plugin_file_no_longer_loads(
        make: Callable[..., OmniApp], cli_rows: PluginSettingsRows, appdir: Path) -> None:
    """A sibling of the revoke: the re-link it needs fails (the file on disk is broken), so
    the old version would go on serving with the capability: it is withdrawn instead."""
    app = make(sandbox={"watch": False})  # the folder does not pick the broken file up itself
    put(cli_rows, grants={"config": {}}, config={"k": "v"})
    eventually(lambda: answer(app) == "v")
    (appdir / "plugins" / "conf.wasm").write_bytes(b"\0asm broken")
    put(cli_rows, limits={"timeout_ms": 500})  # not a revoke: the old version keeps serving
    eventually(lambda: app.plugins.get("conf").stale)
    assert answer(app) == "v"
    put(cli_rows, grants={"config": False})
    eventually(lambda: app.plugins.get("conf").state == "failed")
    assert answer(app) != "v"
    assert "revoked config" in (app.plugins.get("conf").last_error or "")


def test_a_revoke_reaches_a_plugin_loaded_from_outside_the_folder(
        make: Callable[..., OmniApp], cli_rows: PluginSettingsRows, tmp_path: Path) -> None:
    """A sibling of the revoke: the plugin came from ``app.plugins.load(path)``, which the
    folder does not reload; the decided grant reaches it all the same."""
    app = make()
    elsewhere = write(tmp_path, "other.wasm", config_wasm("other"))
    app.plugins.load(elsewhere, grants=["config"], config={"k": "v"})
    assert app.plugins.call("other", "get", b"k") == b"v"
    cli_rows.change("other", lambda doc: {"grants": {"config": False}}, by="cli",
                    at=time.time())
    eventually(lambda: app.plugins.get("other").state == "needs-grant")
    with pytest.raises(NeedsGrant):
        app.plugins.call("other", "get", b"k")


def test_a_bad_row_keeps_the_serving_version_and_says_why(
        make: Callable[..., OmniApp], cli_rows: PluginSettingsRows) -> None:
    app = make()
    put(cli_rows, grants={"config": {}}, config={"k": "v"})
    eventually(lambda: answer(app) == "v")
    put(cli_rows, limits={"timeout_mss": 5})  # written by hand, or by a newer omnicore
    eventually(lambda: app.plugins.get("conf").stale)
    assert answer(app) == "v"
    assert "database" in (app.plugins.get("conf").last_error or "")
    app.stop()
    again = make()  # at load, the same row is the plugin's reason for failing
    info = again.plugins.get("conf")
    assert info.state == "failed" and "timeout_ms" in (info.last_error or "")


def test_a_persisted_grant_is_stored_and_validated_before_anything_changes(
        make: Callable[..., OmniApp], appdir: Path) -> None:
    app = make()
    rows = app.storage.plugin_settings
    with pytest.raises(ConfigError):
        app.plugins.grant("conf", "config", {"no_such_option": 1}, persist=True)
    assert rows.get("conf") is None and app.plugins.get("conf").state == "needs-grant"
    app.plugins.grant("conf", "config", persist=True)
    assert rows.get("conf").doc == {"grants": {"config": {}}}  # type: ignore[union-attr]
    assert app.plugins.get("conf").state == "loaded"
    assert not list((appdir / "plugins").glob("conf.*ml"))
    app.plugins.revoke("conf", "config", persist=True)
    assert rows.get("conf").doc == {"grants": {"config": False}}  # type: ignore[union-attr]
    assert app.plugins.get("conf").state == "needs-grant"
