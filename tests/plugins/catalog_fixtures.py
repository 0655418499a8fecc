"""What the plugin catalog's tests share: the checks they poll a host with, and the catalog as
``omnicore plugins`` opens it beside running hosts (on their SQLite file or their PostgreSQL
database). The hosts themselves: the ``start_host`` fixture (tests/conftest.py)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from omnicore.app import OmniApp
from omnicore.config.schema import CatalogConfig
from omnicore.plugins.catalog import Catalog, app_catalog
from omnicore.plugins.host import PluginHost
from omnicore.storage import SQLiteStorage
from omnicore.storage.base import Storage
from omnicore.storage.postgres import PostgresStorage

__all__ = ["answers", "catalog_of", "digest", "publisher", "serves"]


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def answers(app: OmniApp, name: str, handler: str, data: bytes = b"") -> bytes | None:
    """What ``name.handler`` answers on ``app`` now (None: it cannot be called)."""
    try:
        return app.plugins.call(name, handler, data)
    except Exception:
        return None


def serves(app: OmniApp, name: str, version: str) -> bool:
    """Whether ``app`` serves ``name`` at ``version`` (the test plugins' ``version``
    handler)."""
    return answers(app, name, "version") == version.encode()


def catalog_of(app: OmniApp) -> Catalog:
    """``app``'s own catalog, through its storage."""
    return app_catalog(lambda: app.storage, app.plugins.published.check_module,
                       app.config.catalog)


@contextmanager
def publisher(where: str | Path, config: CatalogConfig | None = None) -> Iterator[Catalog]:
    """The catalog as ``omnicore plugins`` opens it beside running hosts: a connection of
    its own to the PostgreSQL database at URL ``where``, or to the SQLite file ``where``, so
    the hosts hear of a change only as they would of another process's."""
    store: Storage = PostgresStorage(where) if isinstance(where, str) else SQLiteStorage(where)
    checker = PluginHost()
    try:
        yield app_catalog(lambda: store, checker.published.check_module,
                          config or CatalogConfig())
    finally:
        checker.close()
        store.close()
