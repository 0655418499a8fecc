"""The SQLite backend (the embedded default): one module per store over one database file.

``database`` the file, its lock and the core migrations; ``kv``, ``jobs`` (the queue and
schedules), ``events``, ``memory``, ``vectors``, ``secrets``, ``workflows``, ``audit`` one store
each; ``users`` the console's accounts in ``console.db``; ``storage`` the root that holds them.
"""

from __future__ import annotations

from omnicore.storage.sqlite.database import DB_FILE, MIGRATIONS, SCHEMA_VERSION, Synchronous
from omnicore.storage.sqlite.storage import SQLiteStorage
from omnicore.storage.sqlite.users import USERS_FILE

__all__ = ["DB_FILE", "MIGRATIONS", "SCHEMA_VERSION", "USERS_FILE", "SQLiteStorage",
           "Synchronous"]
