"""``app.databases``: the app's database connectors and one backend (pool) per connector,
shared by every plugin, instance and call granted it.

A backend is made on first use and kept while its connector's config is unchanged; a changed
or removed connector's backend is closed (:meth:`Databases.apply`, which a config reload calls
and which audits the change).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

from omnicore.egress.db.config import DbConnector
from omnicore.egress.refused import Refused

__all__ = ["Databases"]


class Databases:
    """The database connectors of an app and their backends."""

    def __init__(self, connectors: Mapping[str, DbConnector] | None = None,
                 read_secret: Callable[[str], bytes | None] = lambda name: None) -> None:
        self._connectors: dict[str, DbConnector] = dict(connectors or {})
        self._read_secret = read_secret
        self._lock = threading.Lock()
        self._backends: dict[str, Any] = {}

    @property
    def connectors(self) -> Mapping[str, DbConnector]:
        return self._connectors

    def backend(self, name: str, kinds: tuple[str, ...]) -> Any:
        """The backend of connector ``name`` (a :class:`~omnicore.egress.db.sql.SqlBackend`
        or :class:`~omnicore.egress.db.redis.RedisBackend`); Refused DENIED when there is no
        such connector of one of ``kinds``."""
        found = self._backends.get(name)
        if found is not None and found.connector.kind in kinds:
            return found
        connector = self._connectors.get(name)
        if connector is None or connector.kind not in kinds:
            raise Refused("DENIED", f"connector {name} is not a {' or '.join(kinds)} "
                                    "connector of this app")
        with self._lock:
            found = self._backends.get(name)
            if found is None:
                found = self._backends[name] = _make(connector, self._read_secret)
            return found

    def apply(self, connectors: Mapping[str, DbConnector],
              audit: Callable[[str, str, dict[str, Any] | None, dict[str, Any] | None], None]
              | None = None) -> list[str]:
        """Take a new set of database connectors (a config reload): backends of changed or
        removed connectors are closed (their connections as they come back), new ones are
        made on first use. ``audit(action, target, before, after)`` is called per change
        with :meth:`DbConnector.describe` (never a secret). The names that changed."""
        with self._lock:
            old, self._connectors = self._connectors, dict(connectors)
            changed = sorted(n for n in set(old) | set(connectors)
                             if old.get(n) != connectors.get(n))
            closing = [self._backends.pop(n) for n in changed if n in self._backends]
        for backend in closing:
            backend.close()
        if audit is not None:
            for n in changed:
                before, after = old.get(n), connectors.get(n)
                action = ("connector.add" if before is None else "connector.remove"
                          if after is None else "connector.change")
                audit(action, f"connector:{n}",
                      _described(before), _described(after))
        return changed

    def describe(self) -> list[dict[str, Any]]:
        """Every database connector as the console shows it: kind, host, database, pool in
        use and idle, last error; never a secret."""
        out = []
        for name, connector in sorted(self._connectors.items()):
            row = connector.describe()
            backend = self._backends.get(name)
            row.update(backend.stats() if backend is not None else
                       {"in_use": 0, "idle": 0, "last_error": None, "last_error_at": None})
            out.append(row)
        return out

    def close(self) -> None:
        with self._lock:
            backends, self._backends = list(self._backends.values()), {}
        for backend in backends:
            backend.close()


def _described(connector: DbConnector | None) -> dict[str, Any] | None:
    return None if connector is None else connector.describe()


def _make(connector: DbConnector, read_secret: Callable[[str], bytes | None]) -> Any:
    # Each driver is imported when a connector of its kind is first used.
    if connector.kind == "redis":
        from omnicore.egress.db.redis import RedisBackend

        return RedisBackend(connector, read_secret)
    from omnicore.egress.db.sql import SqlBackend

    if connector.kind == "postgres":
        from omnicore.egress.db.postgres import PostgresDialect

        return SqlBackend(connector, PostgresDialect(), read_secret)
    from omnicore.egress.db.mysql import MysqlDialect

    return SqlBackend(connector, MysqlDialect(), read_secret)
