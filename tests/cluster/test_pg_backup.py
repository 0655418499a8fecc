"""The PostgreSQL backup recipe of docs/operations/backups.md, run for real: ``pg_dump -Fc``
of a live app's database, ``pg_restore --no-owner`` into a fresh empty database, and a new
host on it with the same ``OMNICORE_SECRET_KEY`` serves everything: kv, a queued job, a
workflow run waiting on its approval, a console user, a secret that still opens, the audit
trail."""

from __future__ import annotations

import base64
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from omnicore import OmniApp
from omnicore.accounts.users import UserStore
from tests.pgcluster import pg_bin
from tests.waiting import eventually

PASSWORD = "correct horse battery"
WORKFLOW = """format: omniflow/v1
name: hold
steps:
  - id: ok
    wait: approval
"""


def _app(root: Path, url: str) -> OmniApp:
    (root / "workflows").mkdir(parents=True, exist_ok=True)
    (root / "workflows" / "hold.yaml").write_text(WORKFLOW)
    app = OmniApp("backup", overrides={
        "data_dir": str(root / "data"), "plugins_dir": str(root / "plugins"),
        "storage": {"url": url}, "console": {"enabled": False},
        "workflows": {"dir": str(root / "workflows")}})
    app.start()
    return app


def _pg(tool: str, *args: str) -> None:
    done = subprocess.run([str(pg_bin() / tool), *args], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_dump_restored_into_a_fresh_database_serves_the_app(
        pg_cluster: Any, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNICORE_SECRET_KEY", base64.b64encode(os.urandom(32)).decode())
    app = _app(tmp_path / "source", pg_url)
    try:
        app.kv.for_plugin("notes").set("greeting", b"hello")
        job = app.jobs.enqueue("notes", "later", b"{}", delay_s=3600)
        app.secrets.set("API_TOKEN", "s3cret")
        UserStore(app.storage.users).add("ada", PASSWORD, "admin")
        run = app.workflows.start("hold")
        audited = len(app.storage.audit.entries())
        dump = tmp_path / "app.dump"
        _pg("pg_dump", "-Fc", "-f", str(dump), pg_url)  # while the host runs
    finally:
        app.stop()

    fresh = pg_cluster.database(f"restored_{os.getpid()}")
    _pg("pg_restore", "--no-owner", "-d", fresh, str(dump))
    copy = _app(tmp_path / "target", fresh)
    try:
        assert copy.kv.for_plugin("notes").get("greeting") == b"hello"
        kept = copy.storage.queue.get(job)
        assert kept is not None and (kept.plugin, kept.handler, kept.state) == \
            ("notes", "later", "queued")
        assert copy.secrets.get("API_TOKEN") == b"s3cret"  # sealed with the same key
        assert UserStore(copy.storage.users).authenticate("ada", PASSWORD) is not None
        [found] = copy.workflows.runs("hold")
        assert found.id == run.id and found.state == "running"
        # The run goes on where it waited: approved on the restored host, it succeeds.
        copy.workflows.approve(run.id, "ok", "ada")
        eventually(lambda: copy.workflows.get_run(run.id).state != "running",
                   "the restored run finished")
        assert copy.workflows.get_run(run.id).state == "succeeded"
        assert len(copy.storage.audit.entries()) >= audited
        # The restored database takes new work: its sequences came along.
        assert copy.jobs.enqueue("notes", "later", b"{}", delay_s=3600) > job
    finally:
        copy.stop()
