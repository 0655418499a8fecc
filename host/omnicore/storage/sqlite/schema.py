"""The SQLite schema of the stores that migrate on first use (``Database.prepare``).

Each component keeps its version in ``component_schema``, so each migrates independently and
appending a step to one never renumbers another. Step ``i`` takes a component from version
``i`` to ``i + 1``: append only; never edit a shipped step.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence

from omnicore.storage.sqlite.fulltext import create, fts_table

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


def _wf_v4(conn: sqlite3.Connection) -> None:
    # The plugin version a step pins (name@sha256:<hex>; NULL: any): claimed only by a host
    # serving that module (stores/leases.py).
    conn.execute("ALTER TABLE wf_steps ADD COLUMN pin TEXT")


def _wf_v5(conn: sqlite3.Connection) -> None:
    # The plugin a plugin step calls (NULL: a step any host runs): claimed only by a host
    # serving it, each plugin's due steps found by one index seek (stores/leases.py). Rows
    # queued before name none and run anywhere, as they did.
    conn.execute("ALTER TABLE wf_steps ADD COLUMN plugin TEXT")
    conn.execute("CREATE INDEX wf_steps_due_by_plugin ON wf_steps(plugin, run_at) "
                 "WHERE state='queued'")


def _wf_v6(conn: sqlite3.Connection) -> None:
    # The W3C traceparent of the span that started a run (NULL: tracing was off), so its
    # steps continue that trace (omnicore.telemetry).
    conn.execute("ALTER TABLE wf_runs ADD COLUMN trace TEXT")


def _memory_v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE memories (id INTEGER PRIMARY KEY, plugin TEXT NOT NULL,"
                 " scope TEXT NOT NULL, tier INTEGER NOT NULL, text TEXT NOT NULL, meta TEXT,"
                 " importance REAL NOT NULL, created_at REAL NOT NULL,"
                 " accessed_at REAL NOT NULL, expires_at REAL, recalls INTEGER NOT NULL"
                 " DEFAULT 0, has_vector INTEGER NOT NULL DEFAULT 0)")
    conn.execute("CREATE INDEX memories_tier ON memories (plugin, tier, importance, "
                 "accessed_at)")
    conn.execute("CREATE INDEX memories_expiry ON memories (expires_at) WHERE expires_at "
                 "IS NOT NULL")
    conn.execute("CREATE VIRTUAL TABLE memories_fts USING fts5(scope, text, content='memories',"
                 " content_rowid='id')")
    conn.execute("CREATE TRIGGER memories_ai AFTER INSERT ON memories BEGIN INSERT INTO "
                 "memories_fts(rowid, scope, text) VALUES (new.id, new.scope, new.text); END")
    conn.execute("CREATE TRIGGER memories_ad AFTER DELETE ON memories BEGIN INSERT INTO "
                 "memories_fts(memories_fts, rowid, scope, text) VALUES ('delete', old.id, "
                 "old.scope, old.text); END")


def _memory_v2(conn: sqlite3.Connection) -> None:
    """One FTS5 table per plugin, filled from the rows; the shared table and its triggers go
    (sqlite/fulltext.py says why)."""
    conn.execute("DROP TRIGGER IF EXISTS memories_ai")
    conn.execute("DROP TRIGGER IF EXISTS memories_ad")
    conn.execute("DROP TABLE IF EXISTS memories_fts")
    for (plugin,) in conn.execute("SELECT DISTINCT plugin FROM memories").fetchall():
        table = fts_table(plugin)
        create(conn, table)
        conn.execute(f"INSERT INTO {table}(rowid, text) SELECT id, text FROM memories "
                     "WHERE plugin = ?", (plugin,))


def _instances_v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE instances (runtime_id TEXT PRIMARY KEY, hostname TEXT NOT NULL,"
                 " pid INTEGER NOT NULL, version TEXT NOT NULL, started_at REAL NOT NULL,"
                 " heartbeat_at REAL NOT NULL, console_url TEXT, jobs_held INTEGER NOT NULL"
                 " DEFAULT 0, draining INTEGER NOT NULL DEFAULT 0)")


def _instances_v2(conn: sqlite3.Connection) -> None:
    # Instances found dead, kept a day for the Instances page (storage/instance_rows.py).
    conn.execute("CREATE TABLE instances_lost (runtime_id TEXT PRIMARY KEY, hostname TEXT NOT "
                 "NULL, pid INTEGER NOT NULL, version TEXT NOT NULL, started_at REAL NOT NULL,"
                 " heartbeat_at REAL NOT NULL, lost_at REAL NOT NULL, reaped_by TEXT NOT NULL,"
                 " jobs TEXT NOT NULL, steps TEXT NOT NULL)")
    conn.execute("CREATE INDEX instances_lost_at ON instances_lost (lost_at)")


def _instances_v3(conn: sqlite3.Connection) -> None:
    # Each instance's plugins as it reported them (the digest it serves of each, and why not
    # the catalog's when it could not load it), for /api/v1/instances (storage/instance_rows.py).
    conn.execute("ALTER TABLE instances ADD COLUMN plugins TEXT NOT NULL DEFAULT '{}'")


def _users_v1(conn: sqlite3.Connection) -> None:
    # console.db, where files written before component versions already hold these tables.
    _script(conn, _USERS_V1)
    # Files written before the trigger existed: users there mean a first user was created.
    conn.execute("INSERT OR IGNORE INTO facts (name, value) SELECT 'had_users', min(created) "
                 "FROM users HAVING count(*) > 0")


_USERS_V1 = """
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, hash TEXT NOT NULL, role TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY AUTOINCREMENT, digest TEXT UNIQUE NOT NULL, label TEXT NOT NULL,
    user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE, created REAL NOT NULL,
    last_used REAL);
CREATE TABLE IF NOT EXISTS sessions (
    digest TEXT PRIMARY KEY, user TEXT NOT NULL REFERENCES users(name) ON DELETE CASCADE,
    csrf TEXT NOT NULL, created REAL NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS setup_links (digest TEXT PRIMARY KEY, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS facts (name TEXT PRIMARY KEY, value REAL NOT NULL)
"""


def _secrets_v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE secrets (name TEXT PRIMARY KEY, key_id TEXT NOT NULL, "
                 "nonce BLOB NOT NULL, ciphertext BLOB NOT NULL, updated_at REAL NOT NULL)")


def _audit_v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE audit (id INTEGER PRIMARY KEY, at REAL NOT NULL, actor TEXT NOT "
                 "NULL, action TEXT NOT NULL, target TEXT, before TEXT, after TEXT, origin TEXT)")
    conn.execute("CREATE INDEX audit_at ON audit (at)")


def _settings_v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE plugin_settings (plugin TEXT PRIMARY KEY, doc TEXT NOT NULL, "
                 "seq INTEGER NOT NULL, updated_at REAL NOT NULL, updated_by TEXT)")
    conn.execute("CREATE INDEX plugin_settings_by_seq ON plugin_settings (seq)")


def _vectors_v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE vector_collections (id INTEGER PRIMARY KEY, plugin TEXT NOT NULL,"
                 " name TEXT NOT NULL, dim INTEGER NOT NULL, metric TEXT NOT NULL,"
                 " next_label INTEGER NOT NULL DEFAULT 0, generation INTEGER NOT NULL DEFAULT 0,"
                 " count INTEGER NOT NULL DEFAULT 0, bytes INTEGER NOT NULL DEFAULT 0,"
                 " created_at REAL NOT NULL, UNIQUE (plugin, name))")
    conn.execute("CREATE TABLE vectors (coll INTEGER NOT NULL, id TEXT NOT NULL,"
                 " label INTEGER NOT NULL, vec BLOB NOT NULL, meta TEXT, size INTEGER NOT NULL,"
                 " PRIMARY KEY (coll, id))")
    conn.execute("CREATE UNIQUE INDEX vectors_label ON vectors (coll, label)")


def _vectors_v2(conn: sqlite3.Connection) -> None:
    # The generation that last wrote each row: an index file of generation G replays the
    # rows above G instead of rebuilding everything.
    conn.execute("ALTER TABLE vectors ADD COLUMN gen INTEGER NOT NULL DEFAULT 0")
    conn.execute("CREATE INDEX vectors_gen ON vectors (coll, gen)")


def _vectors_v3(conn: sqlite3.Connection) -> None:
    # Deleted labels with the generation that deleted them, so a cache catches up on deletes
    # without reading every row. Older deletes have none: "since" below the oldest kept one
    # (or from before this step) answers None, and the cache rebuilds.
    conn.execute("CREATE TABLE vector_deletes (coll INTEGER NOT NULL, label INTEGER NOT NULL,"
                 " gen INTEGER NOT NULL, PRIMARY KEY (coll, gen))")
    conn.execute("ALTER TABLE vector_collections ADD COLUMN deletes_from INTEGER NOT NULL "
                 "DEFAULT 0")
    conn.execute("UPDATE vector_collections SET deletes_from = generation")


def _oauth_v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE oauth_clients (client_id TEXT PRIMARY KEY, doc TEXT NOT NULL, "
                 "created_at REAL NOT NULL)")
    conn.execute("CREATE TABLE oauth_grants (id INTEGER PRIMARY KEY, client_id TEXT NOT NULL, "
                 "client_name TEXT NOT NULL, user_name TEXT NOT NULL, resource TEXT NOT NULL, "
                 "tools TEXT NOT NULL, created_at REAL NOT NULL, revoked_at REAL)")
    conn.execute("CREATE TABLE oauth_codes (hash TEXT PRIMARY KEY, grant_id INTEGER NOT NULL, "
                 "redirect_uri TEXT NOT NULL, explicit INTEGER NOT NULL, challenge TEXT NOT "
                 "NULL, expires_at REAL NOT NULL, used_at REAL)")
    conn.execute("CREATE TABLE oauth_tokens (hash TEXT PRIMARY KEY, grant_id INTEGER NOT NULL, "
                 "kind TEXT NOT NULL, expires_at REAL NOT NULL, revoked_at REAL)")
    conn.execute("CREATE INDEX oauth_tokens_by_grant ON oauth_tokens (grant_id)")


def _oauth_v2(conn: sqlite3.Connection) -> None:
    # Authorization requests waiting on the consent page (their ids hashed), in the database
    # so that any host of it can show and answer them.
    conn.execute("CREATE TABLE oauth_consents (hash TEXT PRIMARY KEY, client TEXT NOT NULL, "
                 "params TEXT NOT NULL, expires_at REAL NOT NULL)")


def _mcp_tasks_v1(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE mcp_tasks (seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, "
                 "owner TEXT NOT NULL, tool TEXT NOT NULL, job_id INTEGER, status TEXT NOT "
                 "NULL, output BLOB, error TEXT, created_at REAL NOT NULL, updated_at REAL "
                 "NOT NULL, expires_at REAL)")
    conn.execute("CREATE INDEX mcp_tasks_by_owner ON mcp_tasks (owner, seq)")
    conn.execute("CREATE INDEX mcp_tasks_by_expiry ON mcp_tasks (expires_at)")


def _catalog_v1(conn: sqlite3.Connection) -> None:
    # The plugin catalog (storage/catalog_rows.py): modules by digest in chunks, every publish
    # a version, each name's version in force numbered by one change sequence.
    _script(conn, _CATALOG_V1)


def _catalog_v2(conn: sqlite3.Connection) -> None:
    # Where a version came from (an OCI reference) and the signatures published with it
    # (JSON), which every host checks against its plugins.trust before it loads the module.
    conn.execute("ALTER TABLE plugin_versions ADD COLUMN source TEXT")
    conn.execute("ALTER TABLE plugin_versions ADD COLUMN signatures TEXT NOT NULL "
                 "DEFAULT '[]'")


def _catalog_v3(conn: sqlite3.Connection) -> None:
    # A name's version in force pinned (omnicore plugins pin): publishes add versions
    # without putting them in force until it is unpinned.
    conn.execute("ALTER TABLE plugin_catalog ADD COLUMN pinned_at REAL")
    conn.execute("ALTER TABLE plugin_catalog ADD COLUMN pinned_by TEXT")


_CATALOG_V1 = """
CREATE TABLE plugin_modules (digest TEXT PRIMARY KEY, size INTEGER NOT NULL,
    chunks INTEGER NOT NULL, created_at REAL NOT NULL);
CREATE TABLE plugin_chunks (digest TEXT NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (digest, idx));
CREATE TABLE plugin_versions (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
    number INTEGER NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL, sidecar TEXT NOT NULL,
    published_by TEXT, published_at REAL NOT NULL);
CREATE INDEX plugin_versions_by_name ON plugin_versions (name, id);
CREATE INDEX plugin_versions_by_digest ON plugin_versions (digest);
CREATE TABLE plugin_catalog (name TEXT PRIMARY KEY, version INTEGER, seq INTEGER NOT NULL,
    updated_at REAL NOT NULL, updated_by TEXT);
CREATE INDEX plugin_catalog_by_seq ON plugin_catalog (seq)
"""


#: The migration steps of each component, by the name its store prepares.
COMPONENTS: Mapping[str, Sequence[Callable[[sqlite3.Connection], None]]] = {
    "workflows": (_wf_v1, _wf_v2, _wf_v3, _wf_v4, _wf_v5, _wf_v6),
    "instances": (_instances_v1, _instances_v2, _instances_v3),
    "memory": (_memory_v1, _memory_v2),
    "vectors": (_vectors_v1, _vectors_v2, _vectors_v3),
    "users": (_users_v1,),
    "secrets": (_secrets_v1,),
    "audit": (_audit_v1,),
    "plugin_settings": (_settings_v1,),
    "oauth": (_oauth_v1, _oauth_v2),
    "mcp_tasks": (_mcp_tasks_v1,),
    "catalog": (_catalog_v1, _catalog_v2, _catalog_v3),
}
