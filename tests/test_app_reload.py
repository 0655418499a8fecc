"""Config reload (app_reload.py, issue 33): a running app with a real plugin folder (the Rust
greeter) follows its omnicore.yaml. Each test edits the file and waits, with a bound, on what
the edit should change: a grant, the MCP exposure, limits, connectors; a key that needs a
restart is named in one log line; a file that fails validation changes nothing and says why."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore import OmniApp
from omnicore.app_reload import ConfigReload, section_of
from omnicore.config import load_config
from omnicore.mcp.expose import handler_tools
from omnicore.mcp.server import ToolServer
from omnicore.mcp.tools import tools_of
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[1]
GREETER = ROOT / "build" / "plugins" / "greeter-rust.wasm"


class Running:
    def __init__(self, root: Path) -> None:
        self.path = root / "omnicore.yaml"
        self.doc: dict[str, Any] = {"name": "reload", "data_dir": "data",
                                    "plugins_dir": "plugins", "workers": 2}
        (root / "plugins").mkdir()
        shutil.copy(GREETER, root / "plugins" / "greeter-rust.wasm")
        self.write()
        self.app = OmniApp(config=load_config(self.path))
        self.reloader = ConfigReload(self.path)
        self.app.add_module(self.reloader)
        self.app.start()

    def write(self, text: str | None = None) -> None:
        # JSON is YAML; a new size or mtime each time, so every write is an edit.
        self.path.write_text(text if text is not None else json.dumps(self.doc))

    def edit(self, **changes: Any) -> int:
        """Apply ``changes`` to the file; the reload count to wait past."""
        seen = self.reloader.reloads
        self.doc.update(changes)
        self.write()
        return seen

    def reloaded_after(self, seen: int) -> None:
        eventually(lambda: self.reloader.reloads > seen, "the reload")

    def greeter(self) -> Any:
        return self.app.plugins.get("greeter-rust")


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    r = Running(tmp_path)
    try:
        yield r
    finally:
        r.app.stop()


def test_a_grant_and_mcp_expose_apply_live_and_are_audited(running: Running) -> None:
    assert running.greeter().state == "needs-grant"
    server = ToolServer(running.app)
    assert tools_of(running.app.plugins, server.exposure) == {}
    running.edit(plugins={"greeter-rust": {"grants": ["config"],
                                           "config": {"greeting": "hej"}}},
                 mcp={"expose": ["greeter-rust/greet"]})
    eventually(lambda: running.greeter().state == "loaded", "the grant")
    eventually(lambda: [t.exposed_by for t in handler_tools(running.app, "greeter-rust")]
               == ["omnicore.yaml"], "the exposure")
    assert list(tools_of(running.app.plugins, server.exposure)) == ["greeter-rust.greet"]
    assert running.greeter().config == {"greeting": "hej"}
    # The audit entry is written after the reload applied what the loop above saw.
    eventually(lambda: running.app.storage.audit.entries(action_prefix="config.reload"),
               "the audit entry")
    [entry] = running.app.storage.audit.entries(action_prefix="config.reload")
    assert entry.actor == "config-file" and entry.origin == str(running.path)
    assert set(entry.after["applied"]) == {"plugins", "mcp"} and entry.after["restart"] == []
    # Taken away again: the grant goes with the file's line.
    seen = running.edit(plugins={})
    running.reloaded_after(seen)
    eventually(lambda: running.greeter().state == "needs-grant", "the revoke")
    assert running.app.config.plugins == {}


def test_a_grant_revoked_by_a_file_of_the_same_size_and_time_is_revoked(
        running: Running, tmp_path: Path) -> None:
    """A deploy that keeps files' times (`rsync -t`, `cp -p`, tar) puts the new config in place
    by a rename, with the old file's size and mtime: the reload compared those alone, and a
    grant the new file took away kept being served (omnicore.filestamp)."""
    granted = {"greeter-rust": {"grants": ["config"], "config": {"greeting": "hej"}}}
    seen = running.edit(plugins=granted)
    running.reloaded_after(seen)
    eventually(lambda: running.greeter().state == "loaded", "the grant")
    before = running.path.stat()
    # The same plugin entry without its grant, padded to the granted file's length.
    revoked = json.dumps({**running.doc, "plugins": {"greeter-rust": {"config": {
        "greeting": "hej"}}}})
    revoked += " " * (before.st_size - len(revoked))
    assert len(revoked) == before.st_size
    staged = tmp_path / "staged.yaml"
    staged.write_text(revoked)
    os.utime(staged, ns=(before.st_atime_ns, before.st_mtime_ns))
    seen = running.reloader.reloads
    os.replace(staged, running.path)
    after = running.path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    running.reloaded_after(seen)
    eventually(lambda: running.greeter().state == "needs-grant", "the revoke")


def test_limits_and_connectors_apply_live(running: Running) -> None:
    running.edit(plugins={"greeter-rust": {"grants": ["config"],
                                           "limits": {"timeout_ms": 250}}},
                 connectors={"api": {"base_url": "https://api.example.com"}})
    eventually(lambda: running.greeter().limits is not None
               and running.greeter().limits.timeout_ms == 250, "the plugin's limit")
    assert sorted(running.app.data.connectors) == ["api"]
    seen = running.edit(sandbox={"limits": {"max_input_bytes": 1 << 20}})
    running.reloaded_after(seen)
    eventually(lambda: running.greeter().limits.max_input_bytes == 1 << 20, "the default limit")
    assert running.greeter().limits.timeout_ms == 250  # the plugin's own still wins


def test_a_key_that_needs_a_restart_is_named_once_and_kept(
        running: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="omnicore.config.reload")
    seen = running.edit(workers=3, storage={"synchronous": "full"},
                        mcp={"expose": ["greeter-rust/*"]})
    running.reloaded_after(seen)
    lines = [r.getMessage() for r in caplog.records if "restart" in r.getMessage()]
    assert lines == ["config reload: omnicore.yaml changed storage.synchronous, workers; "
                     "restart the host to apply (it runs on the values it started with)"]
    assert running.app.config.workers == 2 and running.app.config.storage.synchronous != "full"
    assert running.app.config.mcp.expose == ["greeter-rust/*"]  # the live part applied


def test_a_file_that_fails_validation_changes_nothing(
        running: Running, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="omnicore.config.reload")
    before = running.app.config
    running.doc["mcp"] = {"expose": ["no-slash"]}
    running.write()
    eventually(lambda: any("not applied" in r.getMessage() for r in caplog.records),
               "the refusal")
    running.write("name: reload\nplugins: [oops\n")  # not even YAML
    eventually(lambda: sum("not applied" in r.getMessage() for r in caplog.records) == 2,
               "the second refusal")
    refusals = [r.getMessage() for r in caplog.records]
    assert len(refusals) == 2 and "must be PLUGIN/HANDLER" in refusals[0]
    assert all(m.startswith("config reload: ") and "\n" not in m.split(": ", 2)[1]
               for m in refusals)
    # A connector the egress layer refuses is checked before anything applies.
    running.doc["mcp"] = {"expose": ["greeter-rust/greet"]}
    running.doc["connectors"] = {"api": {"base_url": "ftp://example.com"}}
    running.write()
    eventually(lambda: sum("not applied" in r.getMessage() for r in caplog.records) == 3,
               "the connector's refusal")
    assert running.app.config is before and running.reloader.reloads == 0
    assert running.app.storage.audit.entries(action_prefix="config.reload") == []


def test_every_key_has_a_section_or_needs_a_restart() -> None:
    assert section_of(("plugins", "x", "grants")) == "plugins"
    assert section_of(("capabilities", "kv", "max_keys")) == "capabilities"
    assert section_of(("capabilities", "jobs", "workers")) is None
    assert section_of(("capabilities", "events", "queue_size")) is None
    assert section_of(("connectors", "api", "base_url")) == "connectors"
    assert section_of(("sandbox", "limits", "timeout_ms")) == "limits"
    assert section_of(("workflows", "max_items")) == "workflows"
    for key in (("storage", "url"), ("console", "port"), ("data_dir",), ("sandbox", "watch"),
                ("workflows", "dir"), ("workflows", "webhook_window_s")):
        assert section_of(key) is None, key


def test_a_sidecar_edit_applies_and_is_audited(running: Running) -> None:
    sidecar = running.path.parent / "plugins" / "greeter-rust.yaml"
    sidecar.write_text("grants: [config]\n")
    eventually(lambda: running.greeter().state == "loaded", "the sidecar's grant")
    eventually(lambda: running.app.storage.audit.entries(action_prefix="config.reload"),
               "the audit entry")
    [entry] = running.app.storage.audit.entries(action_prefix="config.reload")
    assert (entry.target, entry.origin) == ("greeter-rust", str(sidecar))
    assert entry.after == {"sidecar": "greeter-rust.yaml", "state": "loaded"}


def test_a_database_connector_edit_applies_and_each_change_is_audited(
        running: Running, caplog: pytest.LogCaptureFixture) -> None:
    """A database connector added, then changed: the app's connectors follow, the audit log
    has one entry per change (never a secret), a bad URL changes nothing."""
    # Wait on the reload count, not on the connector showing: the count moves last, so a
    # wait on the connector could read it before the first reload is counted.
    running.reloaded_after(running.edit(
        connectors={"cache": {"kind": "redis", "url": "redis://127.0.0.1:1/0"}}))
    assert [c["name"] for c in running.app.data.databases.describe()] == ["cache"]
    seen = running.edit(connectors={"cache": {"kind": "redis", "url": "redis://127.0.0.1:2/0",
                                              "secret": "cache-password"}})
    running.reloaded_after(seen)
    entries = running.app.storage.audit.entries(action_prefix="connector.")
    assert sorted(e.action for e in entries) == ["connector.add", "connector.change"]
    # A URL carrying a password is refused before anything applies, and never echoed.
    caplog.set_level("INFO", logger="omnicore.config.reload")
    running.doc["connectors"] = {"cache": {"kind": "redis",
                                           "url": "redis://:hunter2@127.0.0.1:2/0"}}
    running.write()
    eventually(lambda: any("not applied" in r.getMessage() for r in caplog.records),
               "the refusal")
    assert not any("hunter2" in r.getMessage() for r in caplog.records)
    [cache] = running.app.data.databases.describe()
    assert (cache["host"], cache["port"]) == ("127.0.0.1", 2)  # the last good file's
    assert len(running.app.storage.audit.entries(action_prefix="connector.")) == 2
