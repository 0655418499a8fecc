"""The console's accounts on SQLite, in a file of their own beside the app's database.

``<data_dir>/console.db`` (:data:`USERS_FILE`), where accounts have always been kept, so an
existing install keeps its users, tokens and sessions. The file holds the accounts only (no
core tables), with foreign keys on: a user's tokens and sessions go with the user.
"""

from __future__ import annotations

from pathlib import Path

from omnicore.storage.backend import Backend
from omnicore.storage.errors import StorageError
from omnicore.storage.sqlite.database import Database
from omnicore.storage.stores.users import AccountTables, Users

__all__ = ["USERS_FILE", "SQLiteUsers", "console_users"]

USERS_FILE = "console.db"
#: console.db's names, from before PostgreSQL (stores/users.py).
_TABLES = AccountTables(owner="user", facts="facts")


class SQLiteUsers(Users):
    """:class:`~omnicore.storage.user_rows.UserRows` in the SQLite file ``path`` (created on
    first use); :meth:`close` closes the file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._file = Database(path, upto=0, foreign_keys=True)
        except StorageError as exc:
            raise StorageError(f"{exc} (the console's accounts: restore the file from a "
                               "backup, or move it away and create the first admin again)",
                               path=path) from None
        super().__init__(self._file, _TABLES)

    def close(self) -> None:
        self._file.close()


def console_users(db: Backend) -> SQLiteUsers:
    """The console's accounts of the app whose database is ``db``: ``console.db`` beside it."""
    return SQLiteUsers(Path(db.location).parent / USERS_FILE)
