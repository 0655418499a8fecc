"""``PostgresStorage``: every store of an app over one PostgreSQL database several hosts share."""

from __future__ import annotations

from collections.abc import Callable

from omnicore.storage.audit_rows import AuditLog
from omnicore.storage.instance_rows import InstanceRows
from omnicore.storage.memory_rows import MemoryRows
from omnicore.storage.postgres._accounts import PgAudit, PgSecrets, PgUsers
from omnicore.storage.postgres._instances import PgInstances
from omnicore.storage.postgres._memory import PgMemory
from omnicore.storage.postgres._settings import PgPluginSettings
from omnicore.storage.postgres._vectors import PgVectors
from omnicore.storage.postgres.database import Database
from omnicore.storage.secret_rows import SecretRows
from omnicore.storage.settings_rows import PluginSettingsRows
from omnicore.storage.stores.root import BackendStorage
from omnicore.storage.user_rows import UserRows
from omnicore.storage.vector_rows import VectorRows

__all__ = ["PostgresStorage"]


class PostgresStorage(BackendStorage):
    """:class:`~omnicore.storage.base.Storage` on a PostgreSQL database shared by instances."""

    shared = True

    def __init__(self, url: str, *, max_connections: int = 8,
                 connect_timeout_s: float = 2.0) -> None:
        self.backend: Database
        super().__init__(Database(url, max_connections=max_connections,
                                  connect_timeout_s=connect_timeout_s))
        db = self.backend
        self.url = url
        self._instances = PgInstances(db)
        self._memory = PgMemory(db)
        self._vectors = PgVectors(db)
        self._secrets = PgSecrets(db)
        self._users = PgUsers(db)
        self._audit = PgAudit(db)
        self._plugin_settings = PgPluginSettings(db)

    @property
    def instances(self) -> InstanceRows:
        return self._instances

    @property
    def memory(self) -> MemoryRows:
        return self._memory

    @property
    def vectors(self) -> VectorRows:
        return self._vectors

    @property
    def secrets(self) -> SecretRows:
        return self._secrets

    @property
    def users(self) -> UserRows:
        return self._users

    @property
    def audit(self) -> AuditLog:
        return self._audit

    @property
    def plugin_settings(self) -> PluginSettingsRows:
        return self._plugin_settings

    def on_event(self, callback: Callable[[list[int]], None]) -> None:
        self.backend.liveness.on_event(callback)

    def on_settings(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when any instance changes a plugin's settings (LISTEN/NOTIFY);
        from a thread of the storage's own."""
        self.backend.liveness.on_settings(callback)
