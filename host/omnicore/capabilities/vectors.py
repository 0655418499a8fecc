"""``omnicore:vectors`` (specs/abi.md §4.5): named collections of ``f32`` vectors per plugin.

The store is :class:`omnicore.storage.vectors.VectorStore` (rows in SQLite, hnswlib indexes
beside the database). Quotas come from the grant (``max_collections``, ``max_vectors``,
``max_dim``, ``max_bytes``, ``max_metadata_bytes``; app-wide defaults in
``capabilities.vectors``). A wrong dimension, NaN/inf, a bad id or metadata is ``INVALID``,
an unknown collection ``NOT_FOUND``; nothing is half-written. ``query`` is ``search`` with a
metadata equality filter (JSON object).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from omnicore.capabilities import guestjson
from omnicore.capabilities.options import positive_ints
from omnicore.config import OmniConfig
from omnicore.errors import ConfigError
from omnicore.sandbox.capability import Capability, GuestMemory, HostFunction, PluginContext, Status
from omnicore.storage import StorageError, shared_storage
from omnicore.storage.base import QuotaExceeded, ValueTooLarge
from omnicore.storage.vectors import (
    BadVector,
    PluginVectors,
    UnknownCollection,
    VectorQuota,
    VectorStore,
)

__all__ = ["CAPABILITY", "VectorsApp", "capability", "for_app", "quota_from"]

_OPTIONS = ("max_collections", "max_vectors", "max_dim", "max_bytes", "max_metadata_bytes")
_MAX_NAME = 128
_MAX_ID = 512
_MAX_FILTER = 4096


def quota_from(options: Mapping[str, Any], where: str = "grant.vectors",
               base: VectorQuota = VectorQuota()) -> VectorQuota:  # noqa: B008 - frozen
    """A :class:`VectorQuota` from grant (or ``capabilities.vectors``) options."""
    return positive_ints(options, base, where, _OPTIONS)


class _State:
    __slots__ = ("quota", "vectors")

    def __init__(self, vectors: PluginVectors, quota: VectorQuota) -> None:
        self.vectors = vectors
        self.quota = quota


def _text(mem: GuestMemory, ptr: int, length: int, limit: int, what: str) -> str | None:
    mem.check(ptr, length, what)
    if not 0 < length <= limit:
        return None
    try:
        return mem.read(ptr, length, what).decode("utf-8")
    except UnicodeDecodeError:
        return None


def _vector(mem: GuestMemory, ptr: int, dim: int, quota: VectorQuota) -> np.ndarray | int:
    if dim <= 0:
        mem.check(ptr, 0, "vector")
        return Status.INVALID
    if dim > quota.max_dim:  # refuse before copying it out of the guest
        mem.check(ptr, 0, "vector")
        return Status.TOO_LARGE
    return np.frombuffer(mem.read(ptr, 4 * dim, "vector"), dtype="<f4")


def _upsert(state: _State, mem: GuestMemory, cp: int, cl: int, ip: int, il: int, vp: int,
            dim: int, mp: int, ml: int) -> int:
    coll = _text(mem, cp, cl, _MAX_NAME, "collection name")
    vid = _text(mem, ip, il, _MAX_ID, "vector id")
    mem.check(mp, ml, "metadata")
    vec = _vector(mem, vp, dim, state.quota)
    if isinstance(vec, int):
        return vec
    if coll is None or vid is None:
        return Status.INVALID
    if ml > state.quota.max_metadata_bytes:
        return Status.TOO_LARGE
    meta = None
    if ml:
        try:
            meta = guestjson.loads(mem.read(mp, ml, "metadata"))
        except (ValueError, UnicodeDecodeError):
            return Status.INVALID
        if not isinstance(meta, dict):
            return Status.INVALID
    try:
        state.vectors.upsert(coll, vid, vec, meta, state.quota)
    except BadVector:
        return Status.INVALID
    except ValueTooLarge:
        return Status.TOO_LARGE
    except QuotaExceeded:
        return Status.QUOTA
    except StorageError:
        return Status.UNAVAILABLE
    return 0


def _search_block(state: _State, mem: GuestMemory, cp: int, cl: int, vp: int, dim: int,
                  k: int, flt: Any) -> int:
    coll = _text(mem, cp, cl, _MAX_NAME, "collection name")
    vec = _vector(mem, vp, dim, state.quota)
    if isinstance(vec, int) or coll is None:
        why = "vector too large" if vec == Status.TOO_LARGE else "bad collection name or vector"
        name = "TOO_LARGE" if vec == Status.TOO_LARGE else "INVALID"
        return mem.alloc_result(f"{name}: {why}".encode(), error=True)
    try:
        found = state.vectors.search_json(coll, vec, k, flt)
    except UnknownCollection as exc:
        return mem.alloc_result(f"NOT_FOUND: {exc}".encode(), error=True)
    except BadVector as exc:
        return mem.alloc_result(f"INVALID: {exc}".encode(), error=True)
    except StorageError:
        return mem.alloc_result(b"UNAVAILABLE: the vector store failed", error=True)
    return mem.alloc_result(found)


def _search(state: _State, mem: GuestMemory, cp: int, cl: int, vp: int, dim: int,
            k: int) -> int:
    return _search_block(state, mem, cp, cl, vp, dim, k, None)


def _query(state: _State, mem: GuestMemory, cp: int, cl: int, vp: int, dim: int, k: int,
           fp: int, fl: int) -> int:
    mem.check(fp, fl, "filter")
    if fl > _MAX_FILTER:
        return mem.alloc_result(f"TOO_LARGE: filter over {_MAX_FILTER} bytes".encode(),
                                error=True)
    flt = None
    if fl:
        try:
            flt = guestjson.loads(mem.read(fp, fl, "filter"))
        except (ValueError, UnicodeDecodeError):
            return mem.alloc_result(b"INVALID: the filter is not JSON", error=True)
        if not isinstance(flt, dict):
            return mem.alloc_result(b"INVALID: the filter must be a JSON object", error=True)
    return _search_block(state, mem, cp, cl, vp, dim, k, flt)


def _delete(state: _State, mem: GuestMemory, cp: int, cl: int, ip: int, il: int) -> int:
    coll = _text(mem, cp, cl, _MAX_NAME, "collection name")
    vid = _text(mem, ip, il, _MAX_ID, "vector id")
    if coll is None or vid is None:
        return Status.INVALID
    try:
        return 1 if state.vectors.delete(coll, vid) else 0
    except UnknownCollection:
        return Status.NOT_FOUND
    except StorageError:
        return Status.UNAVAILABLE


def _check_grant(options: Mapping[str, Any]) -> None:
    quota_from(options)


def capability(store: Callable[[PluginContext], VectorStore],
               defaults: VectorQuota = VectorQuota()) -> Capability:  # noqa: B008 - frozen
    """The vectors capability over the store ``store(ctx)`` returns."""
    def bind(ctx: PluginContext) -> _State:
        return _State(store(ctx).for_plugin(ctx.plugin), quota_from(ctx.grant, base=defaults))

    return Capability(
        name="vectors",
        description="named f32 vector collections with cosine search (quotas in the grant)",
        functions=(
            HostFunction("upsert", ("ptr", "len", "ptr", "len", "ptr", "i32", "ptr", "len"),
                         ("i32",), _upsert),
            HostFunction("search", ("ptr", "len", "ptr", "i32", "i32"), ("i64",), _search),
            HostFunction("query", ("ptr", "len", "ptr", "i32", "i32", "ptr", "len"), ("i64",),
                         _query),
            HostFunction("delete", ("ptr", "len", "ptr", "len"), ("i32",), _delete),
        ),
        bind=bind,
        check_grant=_check_grant,
    )


_standalone_stores: dict[str, VectorStore] = {}


def _standalone(ctx: PluginContext) -> VectorStore:
    if ctx.data_dir is None:
        raise ConfigError(f"plugin '{ctx.plugin}' is granted vectors, but this plugin host has "
                          "no data_dir to keep them in", key="data_dir")
    key = str(ctx.data_dir)
    if key not in _standalone_stores:
        _standalone_stores[key] = VectorStore(shared_storage(ctx.data_dir).vectors,
                                              ctx.data_dir / "vectors")
    return _standalone_stores[key]


#: For plugin hosts without an app: the store in the host's ``data_dir``.
CAPABILITY = capability(_standalone)


class VectorsApp(Protocol):
    """What the vectors capability needs of an app (``OmniApp`` has it)."""

    config: OmniConfig

    @property
    def vectors(self) -> VectorStore: ...


def for_app(app: VectorsApp) -> Capability:
    """The vectors capability on ``app.vectors``, ``capabilities.vectors`` as default quotas."""
    defaults = quota_from(dict(app.config.capabilities.get("vectors", {})),
                          where="capabilities.vectors")
    return capability(lambda _ctx: app.vectors, defaults)
