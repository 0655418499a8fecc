"""The SQLite backend's root: every store of one app over one database file."""

from __future__ import annotations

from pathlib import Path

from omnicore.storage.audit_rows import AuditLog
from omnicore.storage.instance_rows import InstanceRows
from omnicore.storage.memory_rows import MemoryRows
from omnicore.storage.secret_rows import SecretRows
from omnicore.storage.settings_rows import PluginSettingsRows
from omnicore.storage.sqlite.audit import SQLiteAudit
from omnicore.storage.sqlite.database import SCHEMA_VERSION, Database, Synchronous
from omnicore.storage.sqlite.instances import SQLiteInstances
from omnicore.storage.sqlite.memory import SQLiteMemory
from omnicore.storage.sqlite.plugin_settings import SQLitePluginSettings
from omnicore.storage.sqlite.secrets import SQLiteSecrets
from omnicore.storage.sqlite.users import USERS_FILE, SQLiteUsers
from omnicore.storage.sqlite.vectors import SQLiteVectors
from omnicore.storage.stores.root import BackendStorage
from omnicore.storage.user_rows import UserRows
from omnicore.storage.vector_rows import VectorRows

__all__ = ["SQLiteStorage"]


class SQLiteStorage(BackendStorage):
    """:class:`~omnicore.storage.base.Storage` on one SQLite file.

    ``SQLiteStorage(path)`` opens (creating it and its folder if needed) and migrates the
    core schema; a corrupt, locked, unreadable or newer-version file raises
    :class:`StorageError` naming the file. The other stores create their tables on first use;
    the console's accounts live in ``console.db`` beside the file.
    """

    def __init__(self, path: str | Path, *, synchronous: Synchronous = "normal",
                 busy_timeout_s: float = 5.0, upto: int = SCHEMA_VERSION) -> None:
        self.backend: Database
        super().__init__(Database(path, synchronous=synchronous,
                                  busy_timeout_s=busy_timeout_s, upto=upto))
        self.path = self.backend.path
        self._memory: MemoryRows | None = None
        self._vectors: VectorRows | None = None
        self._secrets: SecretRows | None = None
        self._users: SQLiteUsers | None = None
        self._instances: SQLiteInstances | None = None
        self._audit: AuditLog | None = None
        self._plugin_settings: PluginSettingsRows | None = None

    # Each store migrates its tables when first asked for, so opening the storage for kv
    # alone (``omnicore call``) touches no other table.

    @property
    def instances(self) -> InstanceRows:
        with self._stores_lock:
            if self._instances is None:
                self._instances = SQLiteInstances(self.backend)
            return self._instances

    @property
    def memory(self) -> MemoryRows:
        with self._stores_lock:
            if self._memory is None:
                self._memory = SQLiteMemory(self.backend)
            return self._memory

    @property
    def vectors(self) -> VectorRows:
        with self._stores_lock:
            if self._vectors is None:
                self._vectors = SQLiteVectors(self.backend)
            return self._vectors

    @property
    def secrets(self) -> SecretRows:
        with self._stores_lock:
            if self._secrets is None:
                self._secrets = SQLiteSecrets(self.backend)
            return self._secrets

    @property
    def users(self) -> UserRows:
        with self._stores_lock:
            if self._users is None:
                self._users = SQLiteUsers(self.path.parent / USERS_FILE)
            return self._users

    @property
    def audit(self) -> AuditLog:
        with self._stores_lock:
            if self._audit is None:
                self._audit = SQLiteAudit(self.backend)
            return self._audit

    @property
    def plugin_settings(self) -> PluginSettingsRows:
        with self._stores_lock:
            if self._plugin_settings is None:
                self._plugin_settings = SQLitePluginSettings(self.backend)
            return self._plugin_settings

    def close(self) -> None:
        with self._stores_lock:
            if self._users is not None:
                self._users.close()
        super().close()
