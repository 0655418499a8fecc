"""The SQLite backend (the embedded default): a dialect and a connection under the stores.

``database`` the file, its lock, the core migrations and the
:class:`~omnicore.storage.backend.Backend` the stores of ``storage/stores/`` run on;
``schema`` the migrations of the components that migrate on first use; ``wakeup`` and
``walindex`` and ``readcache`` what one file shared by processes needs; ``fulltext`` its
full-text search (FTS5); ``users`` the console's accounts in ``console.db``; ``storage`` the
root that holds them.
"""

from __future__ import annotations

from omnicore.storage.sqlite.database import DB_FILE, MIGRATIONS, SCHEMA_VERSION, Synchronous
from omnicore.storage.sqlite.storage import SQLiteStorage
from omnicore.storage.sqlite.users import USERS_FILE

__all__ = ["DB_FILE", "MIGRATIONS", "SCHEMA_VERSION", "USERS_FILE", "SQLiteStorage",
           "Synchronous"]
