"""``AppData``: an app's data dir and the stores kept in it, each opened on first use.

An app that never touches a store never opens it: ``omnicore inspect`` and a plugin without
``memory`` cost no database file and no vector index. Each store is opened once
(:class:`~omnicore.core.once.Once`): two threads asking at once share one store. Their
modules are imported on first use too: an app that only calls a plugin (``omnicore call``)
never loads the storage backend (sqlite-utils, numpy), the vector index or the egress client.

:meth:`AppData.open` is the first step of an app's start (the data dir made private, its
lock taken, the database opened, the leases of a host that died holding the lock given
back); :meth:`AppData.close` the last of its stop.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnicore.config import OmniConfig
from omnicore.core.once import Once
from omnicore.errors import ConfigError
from omnicore.logging import BoundLogger
from omnicore.sandbox.modcache import check_cache_dir

if TYPE_CHECKING:
    from omnicore.accounts.audit import Actor
    from omnicore.capabilities.kv import KV
    from omnicore.egress import Connector, Egress
    from omnicore.egress.db import Databases
    from omnicore.sandbox.modkey import ModuleKey
    from omnicore.storage import Storage
    from omnicore.storage.datadir import DataDirLock
    from omnicore.storage.memory import Embedder, MemoryStore
    from omnicore.storage.secrets import SecretStore
    from omnicore.storage.vectors import VectorStore

__all__ = ["AppData"]


class AppData:
    """The data dir of one app (``config.data_dir``) and its stores: ``storage``, ``kv``,
    ``secrets``, ``connectors``, ``egress``, ``databases``, ``vectors``, ``memory``.

    ``runtime_id`` names this host on its lock and its own folder; ``embedder`` finds the
    extension that embeds text for ``memory``, when it is first opened.
    """

    def __init__(self, config: OmniConfig, runtime_id: str, log: BoundLogger, *,
                 embedder: Callable[[], Embedder | None] = lambda: None) -> None:
        self.config = config
        self.runtime_id = runtime_id
        self.log = log
        self._embedder = embedder
        self._storage = Once(self._open_storage)
        self._data_lock: DataDirLock | None = None
        self._kv: KV | None = None
        self._secrets = Once(self._open_secrets)
        self._connectors: dict[str, Connector] | None = None
        self._egress: Egress | None = None
        self._databases = Once(self._open_databases)
        self._vectors = Once(self._open_vectors)
        self._memory = Once(self._open_memory)

    @property
    def data_dir(self) -> Path:
        """Where this app keeps its files (created on start)."""
        return self.config.data_dir

    @property
    def instance_dir(self) -> Path:
        """Where this host keeps what is its own (the vector index caches, ``console.json``):
        the data dir with the embedded database; with a shared one (``storage.url``), a folder
        of this runtime id's under ``<data_dir>/instances/``, so hosts that share a data dir
        never write over each other's files."""
        if self.config.storage.url is None:
            return self.data_dir
        return self.data_dir / "instances" / self.runtime_id

    @property
    def data_lock(self) -> DataDirLock:
        """One host per data dir while started; a refused second host is told who holds it."""
        if self._data_lock is None:
            from omnicore.storage.datadir import DataDirLock

            self._data_lock = DataDirLock(self.config.data_dir)
        return self._data_lock

    @property
    def storage(self) -> Storage:
        """The app's durable state (``<data_dir>/omnicore.db``), opened on first use."""
        return self._storage.get()

    def _open_storage(self) -> Storage:
        from omnicore.storage import open_storage

        return open_storage(self.data_dir, synchronous=self.config.storage.synchronous,
                            url=self.config.storage.url,
                            schema="migrate" if self.config.storage.migrate else "require")

    @property
    def kv(self) -> KV:
        """Plugins' keys from Python: ``app.kv.for_plugin(name).get(key)``."""
        if self._kv is None:
            from omnicore.capabilities.kv import KV

            self._kv = KV(lambda: self.storage)
        return self._kv

    @property
    def secrets(self) -> SecretStore:
        """The app's secrets, encrypted at rest (``omnicore secrets``; abi.md §4.9)."""
        return self._secrets.get()

    def _open_secrets(self) -> SecretStore:
        from omnicore.storage.secrets import SecretStore

        return SecretStore(self.storage.secrets, self.data_dir)

    def module_key(self) -> ModuleKey:
        """The key that authenticates this app's compiled modules (sandbox/modkey.py):
        ``OMNICORE_MODULE_KEY``, else the secret store's (one key for every host of a
        cluster), else, when the store cannot be read, ``<data_dir>/module.key``."""
        from omnicore.sandbox import modkey

        return modkey.app_key(lambda: self.secrets, self.data_dir)

    @property
    def connectors(self) -> dict[str, Connector]:
        """The app's ``connectors.<name>`` (omnicore:http), checked; ConfigError names the key."""
        if self._connectors is None:
            from omnicore.egress import connectors_from

            self._connectors = connectors_from(self.config.connectors)
        return self._connectors

    def reconfigure(self, config: OmniConfig, replaced: OmniConfig | None = None) -> None:
        """A reloaded config (omnicore.yaml edited under the running host): the connectors
        of every kind are made again from it, checked first (ConfigError: nothing changes),
        and compared with those of ``replaced`` (the config that ran, when known);
        each change is audited and a changed database connector's pool is closed
        (:meth:`apply_connectors`)."""
        from omnicore.egress import connectors_from
        from omnicore.egress.db import db_connectors_from

        connectors_from(config.connectors)
        db_connectors_from(config.connectors)
        if replaced is not None:
            # Both sets are made lazily from self.config, which a reload may already have
            # swapped: make them from the config that ran, so the change (and its audit)
            # is measured against it.
            self.config = replaced
            self.connectors  # noqa: B018
            self.databases  # noqa: B018
        self.config = config
        self.apply_connectors(config.connectors)

    @property
    def egress(self) -> Egress:
        """The app's outbound HTTP (plugins' ``http`` grants, workflow connector steps): one
        client, one address policy, one redaction rule (:mod:`omnicore.egress`)."""
        if self._egress is None:
            from omnicore.egress import Egress

            self._egress = Egress(lambda: self.connectors, lambda: self.secrets)
        return self._egress

    @property
    def databases(self) -> Databases:
        """The app's database connectors (``connectors.<name>`` of kind postgres, mysql,
        redis; abi.md §4.10-4.12) and a connection pool per connector, shared by every
        plugin granted it; the passwords from the secret store."""
        return self._databases.get()

    def _open_databases(self) -> Databases:
        from omnicore.egress.db import Databases, db_connectors_from

        return Databases(db_connectors_from(self.config.connectors),
                         lambda name: self.secrets.get(name))

    def apply_connectors(self, connectors: Mapping[str, Any], by: Actor | None = None
                         ) -> list[str]:
        """Take a new ``connectors`` mapping (a config reload): the HTTP connectors are read
        again, and the database connectors' pools of changed or removed ones closed; each
        change is audited (``connector.add|change|remove``, target ``connector:NAME``, what
        :meth:`~omnicore.egress.db.DbConnector.describe` shows: never a secret). ConfigError
        (nothing changed) when the mapping is invalid. The names that changed."""
        from omnicore.accounts.audit import Actor, record
        from omnicore.egress import connectors_from
        from omnicore.egress.db import db_connectors_from

        http = connectors_from(connectors)
        databases = db_connectors_from(connectors)
        who = by if by is not None else Actor("config", "reload")
        old_http = self._connectors if self._connectors is not None else {}
        self._connectors = http
        changed = []
        for name in sorted(set(old_http) | set(http)):
            before, after = old_http.get(name), http.get(name)
            if before != after:
                changed.append(name)
                verb = ("connector.add" if before is None else "connector.remove"
                        if after is None else "connector.change")
                record(self.storage, who, verb, f"connector:{name}",
                       _http_view(before), _http_view(after))
        changed += self.databases.apply(
            databases, lambda verb, target, before, after: record(
                self.storage, who, verb, target, before, after))
        return sorted(changed)

    @property
    def vectors(self) -> VectorStore:
        """Plugins' vector collections (``app.vectors.for_plugin(name)``; abi.md §4.5)."""
        return self._vectors.get()

    def _open_vectors(self) -> VectorStore:
        from omnicore.storage.vectors import VectorStore

        return VectorStore(self.storage.vectors, self.instance_dir / "vectors",
                           shared=self.storage.shared)

    @property
    def memory(self) -> MemoryStore:
        """Plugins' tiered memories (``app.memory.for_plugin(name)``; abi.md §4.4); consolidated
        every ``capabilities.memory.consolidate_every_s`` (600) seconds while open."""
        return self._memory.get()

    def _open_memory(self) -> MemoryStore:
        from omnicore.storage.memory import MemoryStore

        store = MemoryStore(self.storage.memory, lambda: self.vectors, self._embedder)
        every = self.config.capabilities.get("memory", {}).get("consolidate_every_s", 600)
        store.start(float(every))
        return store

    def open(self, app: str) -> None:
        """Make the data dir ready for a start of the app named ``app``: created 0700, its
        lock taken (embedded database: one host per data dir; a second is refused naming the
        first), the database opened (a damaged one ends the start here, in one line), the
        module cache's permissions checked, and the leases of a host that died holding the
        lock given back."""
        try:
            from omnicore.storage.datadir import private_dir

            private_dir(self.data_dir)
        except OSError as exc:
            raise ConfigError(
                f"cannot create data_dir {self.data_dir}: {exc.strerror or exc} "
                f"(set data_dir in omnicore.yaml or OMNICORE_DATA_DIR)",
                key="data_dir", value=str(self.data_dir),
                source=self.config.source_of("data_dir")) from exc
        # The embedded database has one host; a shared one (storage.url) has many, whose
        # membership, not this lock, says who is alive.
        embedded = self.config.storage.url is None
        if embedded:
            self.data_lock.acquire(runtime_id=self.runtime_id, app=app, started_at=time.time())
        queue = self.storage.queue  # a damaged database ends the start here, in one line
        if any(getattr(c, "kind", "http") != "http" for c in self.config.connectors.values()):
            self.databases  # noqa: B018 - a database connector's bad URL ends the start here
        if self.config.sandbox.cache_dir is not None:
            check_cache_dir(self.config.sandbox.cache_dir)
        if not embedded:
            return
        # The lock is ours, so whoever leased the rows still running died holding it.
        jobs = queue.release_others(self.runtime_id)
        steps = self.storage.workflows.release_others(self.runtime_id)
        if jobs or steps:
            gone = self.data_lock.previous or {}
            self.log.warning("released %d job and %d workflow step lease(s) of a host that "
                             "stopped without giving them back (pid %s, runtime id %s): "
                             "they run again now", jobs, steps, gone.get("pid", "?"),
                             gone.get("runtime_id", "?"))

    def close(self) -> None:
        """Close every store opened (the memory consolidation stopped, the vector indexes
        written beside the database before it closes); the next use opens them again."""
        memory = self._memory.take()
        if memory is not None:
            memory.stop()
        databases = self._databases.take()
        if databases is not None:
            databases.close()
        vectors = self._vectors.take()
        if vectors is not None:
            vectors.close()
        self._secrets.take()
        store = self._storage.take()
        if store is not None:
            store.close()
        if self.config.storage.url is not None:
            # A shared database's caches are this runtime id's alone, and the next start
            # has a new id: leave nothing behind.
            shutil.rmtree(self.instance_dir, ignore_errors=True)

    def release(self) -> None:
        """Give the data dir's lock back, if it was taken (the next host may start)."""
        if self._data_lock is not None:
            self._data_lock.release()


def _http_view(connector: Connector | None) -> dict[str, Any] | None:
    """What the audit trail keeps of an HTTP connector: never the secret's value."""
    if connector is None:
        return None
    return {"kind": "http", "base_url": connector.base_url, "auth": connector.auth,
            "secret": connector.secret}
