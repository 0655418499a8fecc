"""The SQLite backend's root: every store of one app over one database file."""

from __future__ import annotations

from pathlib import Path

from omnicore.storage.migration import Policy
from omnicore.storage.sqlite.database import SCHEMA_VERSION, Database, Synchronous
from omnicore.storage.sqlite.users import console_users
from omnicore.storage.stores.root import BackendStorage, Built
from omnicore.storage.user_rows import UserRows

__all__ = ["SQLiteStorage"]


class SQLiteStorage(BackendStorage):
    """:class:`~omnicore.storage.base.Storage` on one SQLite file.

    ``SQLiteStorage(path)`` opens (creating it and its folder if needed) and migrates the
    core schema; a corrupt, locked, unreadable or newer-version file raises
    :class:`StorageError` naming the file. The other stores create their tables on first use;
    the console's accounts live in ``console.db`` beside the file.
    """

    users: Built[UserRows] = Built(console_users)

    def __init__(self, path: str | Path, *, synchronous: Synchronous = "normal",
                 busy_timeout_s: float = 5.0, upto: int = SCHEMA_VERSION,
                 schema: Policy = "migrate") -> None:
        self.backend: Database
        super().__init__(Database(path, synchronous=synchronous,
                                  busy_timeout_s=busy_timeout_s, upto=upto, schema=schema))
        self.path = self.backend.path

    def close(self) -> None:
        with self._stores_lock:
            accounts = self._built.get(console_users)
        if accounts is not None:
            accounts.close()
        super().close()
