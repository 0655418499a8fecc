"""Expand-then-contract migrations (omnicore.storage.migration): the steps' own rules, the
``storage.migrate`` policies, the refusal of a schema a host cannot run on, and ``omnicore
migrate`` with ``--check``, on a real PostgreSQL and real SQLite files. The rolling upgrade
between two builds of omnicore is tests/cluster/test_upgrade.py."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from omnicore import __version__
from omnicore.cli import main
from omnicore.storage import SQLiteStorage
from omnicore.storage.errors import SchemaAhead, SchemaBehind
from omnicore.storage.postgres import PostgresStorage
from omnicore.storage.postgres.schema import RUNS_FROM_SINCE, SCHEMA_VERSION, STEPS
from omnicore.storage.sqlite import SCHEMA_VERSION as SQLITE_VERSION
from omnicore.storage.sqlite.database import MIGRATIONS

#: The schema of the release before the jobs rename (a host of that release made it).
OLD = 9


def _set_schema(url: str, version: int, runs_from: int) -> None:
    s = PostgresStorage(url)
    s.backend.write_one("UPDATE omnicore_schema SET version=?, runs_from=?", (version, runs_from))
    s.close()


def test_every_step_only_adds_unless_marked_contract_and_records_who_runs_after_it() -> None:
    previous = 1
    for number, step in enumerate(STEPS, start=1):
        assert step.what and "\n" not in step.what
        if step.contract:
            # A contract step raises the floor, but never past the release before its own:
            # the release that stopped reading what it drops shipped first.
            assert previous < step.runs_from < number, number
        else:
            assert step.runs_from == previous, number
            assert not re.search(r"\bDROP\b|\bALTER\s+TABLE\s+\w+\s+ALTER\b", step.sql, re.I), \
                f"step {number} is an expand step: it only adds"
        previous = step.runs_from


def test_the_schema_records_the_oldest_host_that_runs_on_it(pg_url: str) -> None:
    s = PostgresStorage(pg_url)
    try:
        assert s.backend.read("SELECT version, runs_from FROM omnicore_schema") == \
            [(SCHEMA_VERSION, STEPS[-1].runs_from)]
        assert SCHEMA_VERSION >= RUNS_FROM_SINCE
    finally:
        s.close()


def test_a_newer_schema_it_cannot_run_on_is_refused_in_one_line_naming_both(
        pg_url: str) -> None:
    _set_schema(pg_url, SCHEMA_VERSION + 2, SCHEMA_VERSION + 1)
    for policy in ("migrate", "require"):
        with pytest.raises(SchemaAhead) as info:
            PostgresStorage(pg_url, schema=policy)  # type: ignore[arg-type]
        text = str(info.value)
        assert "\n" not in text
        assert f"version {SCHEMA_VERSION + 2}" in text
        assert f"needs schema {SCHEMA_VERSION + 1} or newer" in text
        assert f"omnicore {__version__} (schema {SCHEMA_VERSION}) knows up to " \
               f"{SCHEMA_VERSION}" in text and "upgrade omnicore" in text


def test_a_newer_schema_that_records_this_host_can_run_is_opened_and_left_alone(
        pg_url: str) -> None:
    _set_schema(pg_url, SCHEMA_VERSION + 1, SCHEMA_VERSION)
    s = PostgresStorage(pg_url)
    try:
        s.kv("p").set("k", b"v")
        assert s.backend.schema_version == SCHEMA_VERSION + 1
        assert s.backend.pending() == []
    finally:
        s.close()


def test_a_host_told_not_to_migrate_refuses_an_older_schema_and_changes_nothing(
        pg_url: str) -> None:
    PostgresStorage(pg_url, upto=OLD).close()
    with pytest.raises(SchemaBehind) as info:
        PostgresStorage(pg_url, schema="require")
    text = str(info.value)
    assert "\n" not in text
    assert f"at version {OLD} and omnicore {__version__} (schema {SCHEMA_VERSION}) needs " \
           f"{SCHEMA_VERSION}" in text
    assert "omnicore migrate" in text and "storage.migrate is false" in text
    old = PostgresStorage(pg_url, upto=OLD)
    try:
        assert old.backend.schema_version == OLD and old.backend.has_table("tasks")
        assert not old.backend.has_table("jobs")
    finally:
        old.close()


def test_migrate_check_lists_the_pending_steps_and_migrate_applies_them(pg_url: str) -> None:
    PostgresStorage(pg_url, upto=OLD).close()
    runner = CliRunner()
    check = runner.invoke(main, ["migrate", "--url", pg_url, "--check"])
    assert check.exit_code == 1, check.output
    lines = check.output.splitlines()
    assert f"{SCHEMA_VERSION - OLD} steps pending" in lines[0]
    assert f"(schema {SCHEMA_VERSION})" in lines[0]
    assert lines[1:] == [f"  schema {n}: expand: {STEPS[n - 1].what}"
                         for n in range(OLD + 1, SCHEMA_VERSION + 1)]
    applied = runner.invoke(main, ["migrate", "--url", pg_url])
    assert applied.exit_code == 0, applied.output
    assert f"{SCHEMA_VERSION - OLD} steps applied" in applied.output
    again = runner.invoke(main, ["migrate", "--url", pg_url, "--check"])
    assert again.exit_code == 0 and "up to date" in again.output, again.output
    PostgresStorage(pg_url, schema="require").close()  # a non-migrating host now starts


def test_migrate_reads_the_apps_config_and_env(pg_url: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "omnicore.yaml").write_text("name: m\nstorage:\n  migrate: false\n")
    monkeypatch.setenv("OMNICORE_STORAGE__URL", pg_url)
    result = CliRunner().invoke(main, ["migrate", "--app", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"{SCHEMA_VERSION} steps applied" in result.output


def test_sqlite_migrate_check_and_a_host_told_not_to_migrate(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (app / "omnicore.yaml").write_text("name: m\ndata_dir: data\nstorage:\n  migrate: false\n")
    db = app / "data" / "omnicore.db"
    db.parent.mkdir()
    SQLiteStorage(db, upto=SQLITE_VERSION - 1).close()
    with pytest.raises(SchemaBehind, match=f"core {SQLITE_VERSION - 1} .* needs core "
                                           f"{SQLITE_VERSION}.*omnicore migrate"):
        SQLiteStorage(db, schema="require")
    runner = CliRunner()
    check = runner.invoke(main, ["migrate", "--app", str(app), "--check"])
    assert check.exit_code == 1, check.output
    last = MIGRATIONS[-1].__name__.lstrip("_")  # the newest core step, still pending
    assert f"  core {SQLITE_VERSION}: expand: {last}" in check.output
    assert "  workflows 1: expand: wf_v1" in check.output
    assert runner.invoke(main, ["migrate", "--app", str(app)]).exit_code == 0
    assert runner.invoke(main, ["migrate", "--app", str(app), "--check"]).exit_code == 0
    s = SQLiteStorage(db, schema="require")
    try:
        s.kv("p").set("k", b"v")
        assert s.workflows is not None  # every component is there: nothing migrates lazily
    finally:
        s.close()
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SQLITE_VERSION
    conn.close()
