"""The SQLite schema of the stores that migrate on first use (``Database.prepare``).

Each component keeps its version in ``component_schema``, so each migrates independently and
appending a step to one never renumbers another. Step ``i`` takes a component from version
``i`` to ``i + 1``: append only; never edit a shipped step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence

__all__ = ["COMPONENTS"]


def _script(conn: sqlite3.Connection, script: str) -> None:
    # One statement at a time: executescript() would commit the migration's transaction.
    for statement in script.split(";"):
        if statement.strip():
            conn.execute(statement)


def _wf_v1(conn: sqlite3.Connection) -> None:
    _script(conn, _WF_V1)


_WF_V1 = """
    CREATE TABLE wf_versions (hash TEXT PRIMARY KEY, name TEXT NOT NULL,
        definition TEXT NOT NULL, created_at REAL NOT NULL);
    CREATE TABLE wf_runs (id INTEGER PRIMARY KEY, workflow TEXT NOT NULL,
        version TEXT NOT NULL, state TEXT NOT NULL, inputs TEXT NOT NULL, trigger TEXT,
        outputs TEXT, error TEXT, concurrency_key TEXT, started_by TEXT NOT NULL,
        parent_run INTEGER, parent_step TEXT, parent_index INTEGER, created_at REAL NOT NULL,
        started_at REAL, finished_at REAL, restarts INTEGER NOT NULL DEFAULT 0);
    CREATE INDEX wf_runs_by_workflow ON wf_runs(workflow, state);
    CREATE INDEX wf_runs_by_key ON wf_runs(workflow, concurrency_key, state);
    CREATE TABLE wf_steps (run_id INTEGER NOT NULL, step TEXT NOT NULL, idx INTEGER NOT NULL,
        state TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0, input TEXT, output TEXT,
        output_ref TEXT, output_bytes INTEGER, error TEXT, run_at REAL NOT NULL,
        started_at REAL, finished_at REAL, owner TEXT, lease_until REAL, wait TEXT,
        decided_by TEXT, decided_at REAL, PRIMARY KEY (run_id, step, idx));
    CREATE INDEX wf_steps_due ON wf_steps(state, run_at);
    CREATE TABLE wf_history (id INTEGER PRIMARY KEY, run_id INTEGER NOT NULL, at REAL NOT NULL,
        kind TEXT NOT NULL, step TEXT, idx INTEGER, attempt INTEGER, actor TEXT, data TEXT);
    CREATE INDEX wf_history_by_run ON wf_history(run_id, id);
    CREATE TABLE wf_blobs (hash TEXT PRIMARY KEY, data BLOB NOT NULL);
    CREATE TABLE wf_triggers (workflow TEXT NOT NULL, name TEXT NOT NULL,
        next_fire REAL NOT NULL, PRIMARY KEY (workflow, name));
"""


def _wf_v2(conn: sqlite3.Connection) -> None:
    # Signatures of accepted webhook deliveries, kept for the replay window: a restart must
    # not make a delivery acceptable again.
    conn.execute("CREATE TABLE wf_webhook_seen (signature TEXT PRIMARY KEY, at REAL NOT NULL)")


def _wf_v3(conn: sqlite3.Connection) -> None:
    # A sub-run step finds its child by key (delivery after a crash, recovery at restart).
    conn.execute("CREATE INDEX wf_runs_by_parent ON wf_runs(parent_run, parent_step, "
                 "parent_index)")


#: The migration steps of each component, by the name its store prepares.
COMPONENTS: Mapping[str, Sequence[Callable[[sqlite3.Connection], None]]] = {
    "workflows": (_wf_v1, _wf_v2, _wf_v3),
}
