"""Durable state behind interfaces: kv, the job queue, schedules, the event log, memory,
vector rows, sealed secrets, workflow runs, the plugin catalog, the instances sharing the
store, MCP tasks, OAuth's clients and tokens, the console's accounts, the audit log and the
operator's plugin settings.

``open_storage(data_dir)`` gives the app's :class:`Storage`: SQLite (``omnicore.db`` in
``data_dir``, the embedded default) or, with ``url`` (``storage.url``), PostgreSQL, several
hosts on one database. Everything above this package uses only the interfaces (``base``, and
``memory_rows``, ``vector_rows``, ``secret_rows``, ``workflows``, ``catalog_rows``,
``instance_rows``, ``mcp_task_rows``, ``oauth_rows``, ``user_rows``, ``audit_rows``,
``settings_rows``) and the errors every backend raises (``errors``), so another backend can
take over without touching it. Each store is written once in ``stores/`` over the seam of
``backend.py``; ``sqlite/`` and ``postgres/`` are each a dialect and a connection, and
``migration`` what their schema steps say to an operator. Kept here above the interfaces:
the services that hold the policy no backend should repeat (``memory``, ``vectors`` with
``vector_index``, ``secrets``' sealing, ``metadata``'s filters), the data dir as a resource
(``datadir``) and the retention sweep (``retention``, ``retention.*``).
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path
from typing import Any

from omnicore.storage.base import (
    DataDirLocked,
    Job,
    JobQueue,
    JobSpec,
    KVQuota,
    KVStore,
    KVUsage,
    NotAnInteger,
    PluginJobs,
    QuotaExceeded,
    Refused,
    Storage,
    StorageError,
    StorageFull,
    ValueTooLarge,
    renamed,
)
from omnicore.storage.migration import Policy
from omnicore.storage.sqlite import DB_FILE, SQLiteStorage, Synchronous

__all__ = ["DB_FILE", "DataDirLocked", "Job", "JobQueue", "JobSpec", "KVQuota", "KVStore",
           "KVUsage", "NotAnInteger", "PluginJobs", "QuotaExceeded", "Refused", "SQLiteStorage",
           "Storage", "StorageError", "StorageFull", "ValueTooLarge", "backup", "open_storage",
           "restore", "shared_storage"]


def __getattr__(name: str) -> Any:
    # The job's names from when it was a task (Task, TaskSpec, TaskQueue, PluginTasks):
    # the new object, with a DeprecationWarning.
    return renamed(__name__, name, globals())


def backup(data_dir: str | Path, dest: str | Path) -> list[str]:
    """A consistent copy of an embedded app's data (while its host runs) in the archive
    ``dest``; the files it holds (:mod:`omnicore.storage.sqlite.backup`)."""
    from omnicore.storage.sqlite.backup import backup as take

    return take(Path(data_dir), Path(dest))


def restore(archive: str | Path, data_dir: str | Path, *, force: bool = False) -> list[str]:
    """Bring an embedded app's data back from ``archive`` (its host stopped); the files."""
    from omnicore.storage.sqlite.backup import restore as bring_back

    return bring_back(Path(archive), Path(data_dir), force=force)


def open_storage(data_dir: str | Path, *, synchronous: Synchronous = "normal",
                 url: str | None = None, schema: Policy = "migrate") -> Storage:
    """Open (create, migrate) the storage of the app whose data dir is ``data_dir``; with
    ``url`` (``storage.url``), the shared PostgreSQL database it names instead. ``schema``:
    what to do with a schema older than this omnicore's (omnicore.storage.migration; a host
    with ``storage.migrate: false`` passes ``require``)."""
    if url is not None:
        from omnicore.storage.postgres import PostgresStorage  # psycopg only when asked

        return PostgresStorage(url, schema=schema)
    return SQLiteStorage(Path(data_dir) / DB_FILE, synchronous=synchronous, schema=schema)


_shared: dict[Path, Storage] = {}
_shared_lock = threading.Lock()


def shared_storage(data_dir: str | Path) -> Storage:
    """One storage per data dir for this process, closed at exit.

    For plugin hosts used without an app (``omnicore call``): an app opens and closes its own.
    """
    key = Path(data_dir).resolve()
    with _shared_lock:
        found = _shared.get(key)
        if found is None:
            found = _shared[key] = open_storage(key)
            atexit.register(found.close)
        return found
