"""The app's durable stores, each opened on first use (a part of :class:`~omnicore.app.OmniApp`).

An app that never touches a store never opens it: ``omnicore inspect`` and a plugin without
``memory`` cost no database file and no vector index. Opening takes ``_storage_lock`` so two
threads asking at once share one store. Their modules are imported on first use too: an app
that only calls a plugin (``omnicore call``) never loads the storage backend (sqlite-utils,
numpy), the vector index or the egress client.
"""

from __future__ import annotations

import functools
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from omnicore.config import OmniConfig
from omnicore.extensions.manager import ExtensionManager

if TYPE_CHECKING:
    from omnicore.capabilities.kv import KV
    from omnicore.egress import Connector, Egress
    from omnicore.storage import Storage
    from omnicore.storage.datadir import DataDirLock
    from omnicore.storage.memory import Embedder, MemoryStore
    from omnicore.storage.secrets import SecretStore
    from omnicore.storage.vectors import VectorStore

__all__ = ["AppStores"]


class AppStores:
    """An app's ``data_dir`` and its stores: ``storage``, ``secrets``, ``connectors``,
    ``egress``, ``vectors``, ``memory`` (``OmniApp`` sets the attributes declared here)."""

    config: OmniConfig
    extensions: ExtensionManager
    runtime_id: str
    _storage: Storage | None
    _storage_lock: threading.Lock

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

    @functools.cached_property
    def data_lock(self) -> DataDirLock:
        """One host per data dir while started; a refused second host is told who holds it."""
        from omnicore.storage.datadir import DataDirLock

        return DataDirLock(self.config.data_dir)

    @functools.cached_property
    def kv(self) -> KV:
        """Plugins' keys from Python: ``app.kv.for_plugin(name).get(key)``."""
        from omnicore.capabilities.kv import KV

        return KV(lambda: self.storage)

    @property
    def storage(self) -> Storage:
        """The app's durable state (``<data_dir>/omnicore.db``), opened on first use."""
        store = self._storage
        if store is None:
            with self._storage_lock:
                store = self._storage
                if store is None:
                    from omnicore.storage import open_storage

                    store = self._storage = open_storage(
                        self.data_dir, synchronous=self.config.storage.synchronous,
                        url=self.config.storage.url)
        return store

    @property
    def secrets(self) -> SecretStore:
        """The app's secrets, encrypted at rest (``omnicore secrets``; abi.md §4.9)."""
        store = self.__dict__.get("_secrets")
        if store is None:
            rows = self.storage.secrets
            with self._storage_lock:
                store = self.__dict__.get("_secrets")
                if store is None:
                    from omnicore.storage.secrets import SecretStore

                    store = self.__dict__["_secrets"] = SecretStore(rows, self.data_dir)
        return store

    @property
    def connectors(self) -> dict[str, Connector]:
        """The app's ``connectors.<name>`` (omnicore:http), checked; ConfigError names the key."""
        found: dict[str, Connector] | None = self.__dict__.get("_connectors")
        if found is None:
            from omnicore.egress import connectors_from

            found = self.__dict__["_connectors"] = connectors_from(self.config.connectors)
        return found

    @property
    def egress(self) -> Egress:
        """The app's outbound HTTP (plugins' ``http`` grants, workflow connector steps): one
        client, one address policy, one redaction rule (:mod:`omnicore.egress`)."""
        found: Egress | None = self.__dict__.get("_egress")
        if found is None:
            from omnicore.egress import Egress

            found = self.__dict__["_egress"] = Egress(lambda: self.connectors,
                                                      lambda: self.secrets)
        return found

    @property
    def vectors(self) -> VectorStore:
        """Plugins' vector collections (``app.vectors.for_plugin(name)``; abi.md §4.5)."""
        store = self.__dict__.get("_vectors")
        if store is None:
            rows = self.storage.vectors
            with self._storage_lock:
                store = self.__dict__.get("_vectors")
                if store is None:
                    from omnicore.storage.vectors import VectorStore

                    store = self.__dict__["_vectors"] = VectorStore(
                        rows, self.instance_dir / "vectors", shared=self.storage.shared)
        return store

    @property
    def memory(self) -> MemoryStore:
        """Plugins' tiered memories (``app.memory.for_plugin(name)``; abi.md §4.4); consolidated
        every ``capabilities.memory.consolidate_every_s`` (600) seconds while open."""
        store = self.__dict__.get("_memory")
        if store is None:
            rows = self.storage.memory
            with self._storage_lock:
                store = self.__dict__.get("_memory")
                if store is None:
                    from omnicore.storage.memory import MemoryStore

                    store = self.__dict__["_memory"] = MemoryStore(
                        rows, lambda: self.vectors, self._embedder)
                    every = self.config.capabilities.get("memory", {}).get(
                        "consolidate_every_s", 600)
                    store.start(float(every))
        return store

    def _close_storage(self) -> None:
        memory = self.__dict__.pop("_memory", None)
        if memory is not None:
            memory.stop()
        vectors = self.__dict__.get("_vectors")
        if vectors is not None:
            vectors.close()  # indexes are written beside the database before it closes
        with self._storage_lock:
            store, self._storage = self._storage, None
            self.__dict__.pop("_secrets", None)
            self.__dict__.pop("_vectors", None)
        if store is not None:
            store.close()
        if self.config.storage.url is not None:
            # A shared database's caches are this runtime id's alone, and the next start
            # has a new id: leave nothing behind.
            shutil.rmtree(self.instance_dir, ignore_errors=True)

    def _embedder(self) -> Embedder | None:
        """The first extension with an ``embed(texts) -> vectors`` method, if any."""
        for name in self.extensions.names:
            embed = getattr(self.extensions.get(name), "embed", None)
            if callable(embed):
                return embed  # type: ignore[no-any-return]
        return None

