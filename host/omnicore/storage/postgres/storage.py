"""``PostgresStorage``: every store of an app over one PostgreSQL database several hosts share."""

from __future__ import annotations

from collections.abc import Callable

from omnicore.storage.migration import Policy
from omnicore.storage.postgres.database import Database
from omnicore.storage.postgres.schema import SCHEMA_VERSION
from omnicore.storage.stores.root import BackendStorage

__all__ = ["PostgresStorage"]


class PostgresStorage(BackendStorage):
    """:class:`~omnicore.storage.base.Storage` on a PostgreSQL database shared by instances."""

    shared = True

    def __init__(self, url: str, *, max_connections: int = 8,
                 connect_timeout_s: float = 2.0, upto: int = SCHEMA_VERSION,
                 schema: Policy = "migrate") -> None:
        self.backend: Database
        super().__init__(Database(url, max_connections=max_connections,
                                  connect_timeout_s=connect_timeout_s, upto=upto,
                                  schema=schema))
        self.url = url

    def on_event(self, callback: Callable[[list[int]], None]) -> None:
        self.backend.liveness.on_event(callback)

    def on_settings(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when any instance changes a plugin's settings (LISTEN/NOTIFY);
        from a thread of the storage's own."""
        self.backend.liveness.on_settings(callback)

    def on_catalog(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` when any instance changes the plugin catalog (LISTEN/NOTIFY), and
        after every reconnect; from a thread of the storage's own."""
        self.backend.liveness.on_catalog(callback)
