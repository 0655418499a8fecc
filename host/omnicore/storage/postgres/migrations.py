"""Running the PostgreSQL schema's steps (schema.py): at a host's open and for ``omnicore
migrate``, by the policy ``storage.migrate`` chose (omnicore.storage.migration).

Several hosts and a migration job may open an old database at once: the steps run in one
transaction under an advisory lock (:data:`~omnicore.storage.postgres.schema.LOCK_ID`), so one
applies them and the others wait for it and then find nothing to do. DDL is transactional in
PostgreSQL: a step that fails leaves the schema as it was.
"""

from __future__ import annotations

from typing import Any

from omnicore.logging import get_logger
from omnicore.storage.migration import Pending, Policy, ahead, behind, host_name
from omnicore.storage.postgres.schema import LOCK_ID, RUNS_FROM_SINCE, SCHEMA_VERSION, STEPS

__all__ = ["apply", "open_schema", "pending", "state"]

_log = get_logger("storage")


def state(conn: Any) -> tuple[int, int | None]:
    """The database's schema version and the oldest host it records can run on it (None:
    recorded only since :data:`RUNS_FROM_SINCE`)."""
    if not conn.execute("SELECT to_regclass('omnicore_schema') IS NOT NULL").fetchone()[0]:
        return 0, None
    row = conn.execute("SELECT version FROM omnicore_schema").fetchone()
    version = int(row[0]) if row else 0
    if version < RUNS_FROM_SINCE:
        return version, None
    return version, int(conn.execute("SELECT runs_from FROM omnicore_schema").fetchone()[0])


def pending(conn: Any, upto: int = SCHEMA_VERSION) -> list[Pending]:
    """The steps a migration to ``upto`` would apply, oldest first."""
    version, _ = state(conn)
    return [Pending("schema", i + 1, STEPS[i].what, STEPS[i].contract)
            for i in range(version, upto)]


def _runs_here(location: str, version: int, runs_from: int | None) -> None:
    # A newer schema: this host runs on it when the schema says a host of its version can.
    if version <= SCHEMA_VERSION:
        return
    if runs_from is None or runs_from > SCHEMA_VERSION:
        raise ahead(location, version, runs_from, SCHEMA_VERSION)
    _log.info("storage %s: the schema is at version %d, newer than %s, which it still runs "
              "on (it records hosts of schema %d and newer)", location, version,
              host_name(SCHEMA_VERSION), runs_from)


def open_schema(conn: Any, location: str, policy: Policy, upto: int = SCHEMA_VERSION) -> None:
    """At a host's open: refuse a schema it cannot run on; under ``migrate`` apply the pending
    steps, under ``require`` refuse a schema older than ``upto``."""
    if policy == "migrate":
        apply(conn, location, upto)
        return
    version, runs_from = state(conn)
    if policy == "inspect":
        return
    _runs_here(location, version, runs_from)
    if version < upto:
        raise behind(location, str(version), str(upto))


def apply(conn: Any, location: str, upto: int = SCHEMA_VERSION) -> list[Pending]:
    """Bring the schema to ``upto`` (a newer one is left as it is); the steps applied."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
        conn.execute("CREATE TABLE IF NOT EXISTS omnicore_schema (version integer NOT NULL)")
        if conn.execute("SELECT version FROM omnicore_schema").fetchone() is None:
            conn.execute("INSERT INTO omnicore_schema VALUES (0)")
        version, runs_from = state(conn)
        _runs_here(location, version, runs_from)
        if version >= upto:
            return []
        todo = pending(conn, upto)
        for step in STEPS[version:upto]:
            conn.execute(step.sql)
        conn.execute("UPDATE omnicore_schema SET version=%s", (upto,))
        if upto >= RUNS_FROM_SINCE:
            conn.execute("UPDATE omnicore_schema SET runs_from=%s", (STEPS[upto - 1].runs_from,))
    return todo
