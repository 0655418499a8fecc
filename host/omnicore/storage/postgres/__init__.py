"""The PostgreSQL backend: several hosts on one database, chosen by ``storage.url``.

``PostgresStorage("postgresql://omnicore@db:5432/omnicore")`` opens a small connection pool
(psycopg 3 + psycopg_pool), runs the versioned migrations under an advisory lock (so several
instances and a CLI command may start at once on an empty database), and serves the same
interface as the SQLite backend: per-plugin kv with quotas, the job queue with
``FOR UPDATE SKIP LOCKED`` claims, schedules by compare-and-set, the event log.

Why a pool of at most ``max_connections`` (default 8): PostgreSQL's default
``max_connections`` is 100, and a cluster of several instances, each with its workers, the
console and CLI commands, must fit in it with room for the operator's own tools.

Every database error becomes a :class:`~omnicore.storage.base.StorageError` naming the
database with its password masked; an unreachable server fails within ``connect_timeout_s``
instead of hanging a caller (a busy pool is waited for longer: ``database.BUSY_WAIT_S``).
"""

from __future__ import annotations

from omnicore.config.schema import masked_url
from omnicore.storage.postgres.storage import PostgresStorage

__all__ = ["PostgresStorage", "masked_url"]
