"""``omnicore settings`` beside a running host: the CLI asks that host through its REST API,
which applies the change at once; a plugin the host does not have gets its settings written to
the app's database, where they wait for it; with no host running the CLI writes the database
itself. Bad input is refused before anything is written."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicore.cli.remote import Remote, RemoteError
from omnicore.storage import SQLiteStorage
from tests.host_fixtures import config_wasm
from tests.hosts import Host
from tests.waiting import seconds_until

#: The host polls the change sequence every second; slack for a loaded 2-core machine.
APPLIED_WITHIN_S = 1.0 + 1.5


def omnicore(appdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "omnicore.cli", "settings", *args,
                           "--app", str(appdir)], capture_output=True, text=True, timeout=120)


def answer(remote: Remote) -> str:
    try:
        return remote.call("conf", "get", b"k").decode()
    except RemoteError as exc:
        return exc.type


@pytest.fixture
def running(tmp_path: Path) -> Iterator[tuple[Path, Remote]]:
    appdir = tmp_path / "app"
    (appdir / "plugins").mkdir(parents=True)
    (appdir / "plugins" / "conf.wasm").write_bytes(config_wasm("conf"))
    (appdir / "omnicore.yaml").write_text("name: cli-settings\ndata_dir: data\n"
                                          "plugins_dir: plugins\nconsole: {port: 0}\n")
    with Host(appdir).start() as host:
        remote = host.remote()
        # The console answers before the plugins are loaded (their loading takes a while).
        host.until(lambda: answer(remote) == "NeedsGrant", "conf loaded, without its grant")
        yield appdir, remote


def applied(remote: Remote, expected: str) -> float:
    return seconds_until(lambda: answer(remote) == expected, f"conf answering {expected!r}")


def test_settings_from_the_cli_reach_the_running_host(running: tuple[Path, Remote]) -> None:
    appdir, remote = running
    assert answer(remote) == "NeedsGrant"
    for args in (("grant", "conf", "config"), ("config", "conf", "k=from-cli")):
        done = omnicore(appdir, *args)
        assert done.returncode == 0, done.stderr
    assert json.loads(omnicore(appdir, "show", "conf", "--json").stdout) == {
        "grants": {"config": {}}, "config": {"k": "from-cli"}}
    took = applied(remote, "from-cli")
    assert took < APPLIED_WITHIN_S, took
    assert omnicore(appdir, "limits", "conf", "max_output_bytes=2").returncode == 0
    applied(remote, "OutputTooLarge")
    assert omnicore(appdir, "clear", "conf", "limits").returncode == 0
    applied(remote, "from-cli")
    assert omnicore(appdir, "revoke", "conf", "config").returncode == 0
    took = applied(remote, "NeedsGrant")
    assert took < APPLIED_WITHIN_S, took
    assert not list((appdir / "plugins").glob("conf.*ml"))  # the folder is the host's own
    # A plugin this host does not have (yet): stored in the database, waiting for it.
    later = omnicore(appdir, "grant", "later", "kv")
    assert later.returncode == 0 and "stored; every running host" in later.stderr, later.stderr
    # The host hears of it by the database's change sequence.
    took = seconds_until(lambda: remote.request("GET", "/api/v1/plugins/later/settings")
                         == {"grants": {"kv": {}}}, "the stored grant on the running host")
    assert took < APPLIED_WITHIN_S, took
    refused = omnicore(appdir, "grant", "conf", "telepathy")  # the host's own check
    assert refused.returncode == 1 and "UnknownCapability" in refused.stderr, refused.stderr


def test_a_missing_grant_on_the_running_host_names_the_settings_command(
        running: tuple[Path, Remote]) -> None:
    appdir, _remote = running
    done = subprocess.run([sys.executable, "-m", "omnicore.cli", "call", "conf", "get",
                           "--input", "k", "--app", str(appdir)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1
    assert "needs grant: omnicore:config on the host at http" in done.stderr, done.stderr
    assert f"grant it there: omnicore settings grant conf config --app {appdir}" in done.stderr
    assert "--grant" not in done.stderr  # a flag of an embedded call, not of a running host
    shown = subprocess.run([sys.executable, "-m", "omnicore.cli", "inspect", "conf", "--app",
                            str(appdir)], capture_output=True, text=True, timeout=120)
    assert "needs grant omnicore:config" in shown.stdout, shown.stdout + shown.stderr
    assert f"grant it  omnicore settings grant conf config --app {appdir}" in shown.stdout


def test_isolation_is_a_limit_the_cli_sets(tmp_path: Path) -> None:
    appdir = tmp_path / "app"
    (appdir / "plugins").mkdir(parents=True)
    (appdir / "omnicore.yaml").write_text("name: iso\ndata_dir: data\nplugins_dir: plugins\n")
    done = omnicore(appdir, "limits", "conf", "isolation=per-call")
    assert done.returncode == 0, done.stderr
    shown = json.loads(omnicore(appdir, "show", "conf", "--json").stdout)
    assert shown["limits"] == {"isolation": "per-call"}


@pytest.mark.parametrize("args, says", [
    (("grant", "conf", "telepathy"), "telepathy"),
    (("grant", "conf", "http", "--options", '{"allow_hosts": 5}'), "allow_hosts"),
    (("grant", "conf", "kv", "--options", "{not json"), "--options"),
    (("revoke", "conf", "telepathy"), "telepathy"),
    (("limits", "conf", "timeout_mss=5"), "timeout_mss"),
    (("limits", "conf", "timeout_ms=-1"), "timeout_ms"),
    (("limits", "conf", "isolation=fresh"), "limits.isolation must be one of"),
    (("config", "conf", "novalue"), "KEY=VALUE"),
])
def test_bad_input_is_refused_and_nothing_is_written(tmp_path: Path, args: tuple[str, ...],
                                                     says: str) -> None:
    appdir = tmp_path / "app"
    (appdir / "plugins").mkdir(parents=True)
    (appdir / "omnicore.yaml").write_text("name: bad\ndata_dir: data\nplugins_dir: plugins\n")
    done = omnicore(appdir, *args)
    assert done.returncode != 0 and says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    store = SQLiteStorage(appdir / "data" / "omnicore.db")
    try:
        assert store.plugin_settings.get("conf") is None
    finally:
        store.close()


def _secret_answer(remote: Remote, plugin: str) -> tuple[int, bytes] | str:
    try:
        out = remote.call(plugin, "get", b"api_token")
    except RemoteError as exc:
        return exc.type
    return struct.unpack("<i", out[:4])[0], out[4:]


@pytest.mark.parametrize("where", ["running host", "no host"])
def test_the_grant_hint_after_a_revoke_restores_the_grant_with_its_options(
        tmp_path: Path, where: str) -> None:
    """Issue 48: after a revoke, the hint `omnicore settings grant P CAP --app DIR` used to
    store `{CAP: {}}` over omnicore.yaml's options, and the plugin it meant to fix stayed
    broken (DENIED). A grant without --options takes omnicore.yaml's and the sidecar's."""
    from tests.capabilities.test_secrets import secrets_wasm

    appdir = tmp_path / "app"
    (appdir / "plugins").mkdir(parents=True)
    (appdir / "plugins" / "vault.wasm").write_bytes(secrets_wasm("vault"))
    (appdir / "omnicore.yaml").write_text(
        "name: hint\ndata_dir: data\nplugins_dir: plugins\nconsole: {port: 0}\n"
        "plugins:\n  vault:\n    grants:\n      secrets: {expose: [api_token]}\n")
    if where == "no host":
        assert omnicore(appdir, "revoke", "vault", "secrets").returncode == 0
        shown = json.loads(omnicore(appdir, "show", "vault", "--json").stdout)
        assert shown["grants"] == {"secrets": False}
        done = omnicore(appdir, "grant", "vault", "secrets")
        assert done.returncode == 0, done.stderr
        shown = json.loads(omnicore(appdir, "show", "vault", "--json").stdout)
        assert shown["grants"] == {"secrets": {"expose": ["api_token"]}}
        # Options given are the options stored.
        done = omnicore(appdir, "grant", "vault", "secrets", "--options", '{"expose": []}')
        assert done.returncode == 0, done.stderr
        shown = json.loads(omnicore(appdir, "show", "vault", "--json").stdout)
        assert shown["grants"] == {"secrets": {"expose": []}}
        return
    with Host(appdir).start() as host:
        remote = host.remote()
        remote.request("PUT", "/api/v1/secrets/api_token", {"value": "tok-123"})
        host.until(lambda: _secret_answer(remote, "vault") == (7, b"tok-123"),
                   "vault reading its secret")
        assert omnicore(appdir, "revoke", "vault", "secrets").returncode == 0
        host.until(lambda: _secret_answer(remote, "vault") == "NeedsGrant",
                   "vault without its grant")
        called = subprocess.run([sys.executable, "-m", "omnicore.cli", "call", "vault", "get",
                                 "--input", "api_token", "--app", str(appdir)],
                                capture_output=True, text=True, timeout=120)
        assert called.returncode == 1, called.stderr
        hint = called.stderr.split("grant it there: ", 1)[1].strip()
        assert hint == f"omnicore settings grant vault secrets --app {appdir}", called.stderr
        # Follow the hint exactly as printed.
        done = subprocess.run([sys.executable, "-m", "omnicore.cli", *hint.split()[1:]],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert json.loads(omnicore(appdir, "show", "vault", "--json").stdout)["grants"] == \
            {"secrets": {"expose": ["api_token"]}}
        host.until(lambda: _secret_answer(remote, "vault") == (7, b"tok-123"),
                   "vault reading its secret again, not DENIED")
