"""``omnicore:vectors`` (specs/abi.md §4.5): named collections of ``f32`` vectors per plugin.

The store is :class:`omnicore.storage.vectors.VectorStore` (rows in SQLite, hnswlib indexes
beside the database). Quotas come from the grant (``max_collections``, ``max_vectors``,
``max_dim``, ``max_bytes``, ``max_metadata_bytes``; app-wide defaults in
``capabilities.vectors``). A wrong dimension, NaN/inf, a bad id or metadata is ``INVALID``,
an unknown collection ``NOT_FOUND``; nothing is half-written. ``query`` is ``search`` with a
metadata equality filter (JSON object).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from omnicore.capabilities import guestjson, standalone
from omnicore.capabilities.options import GrantLimits
from omnicore.capabilities.types import AppServices
from omnicore.sandbox import capability as cap
from omnicore.storage import StorageError, shared_storage
from omnicore.storage.vectors import (
    BadVector,
    PluginVectors,
    UnknownCollection,
    VectorQuota,
    VectorStore,
)

__all__ = ["CAPABILITY", "LIMITS", "capability", "for_app"]

#: The quotas a grant (or ``capabilities.vectors``) sets.
LIMITS = GrantLimits("vectors", VectorQuota(), ("max_collections", "max_vectors", "max_dim",
                                                "max_bytes", "max_metadata_bytes"))
_MAX_NAME = 128
_MAX_ID = 512
_MAX_FILTER = 4096
_F32 = np.dtype("<f4")  # a dtype object: a dtype string is parsed on every call


class _State:
    __slots__ = ("quota", "vectors")

    def __init__(self, vectors: PluginVectors, quota: VectorQuota) -> None:
        self.vectors = vectors
        self.quota = quota


def _vector(mem: cap.GuestMemory, ptr: int, dim: int, quota: VectorQuota) -> np.ndarray | int:
    if dim <= 0:
        mem.check(ptr, 0, "vector")
        return cap.Status.INVALID
    if dim > quota.max_dim:  # refuse before copying it out of the guest
        mem.check(ptr, 0, "vector")
        return cap.Status.TOO_LARGE
    return np.frombuffer(mem.read(ptr, 4 * dim, "vector"), _F32)


def _upsert(state: _State, mem: cap.GuestMemory, cp: int, cl: int, ip: int, il: int, vp: int,
            dim: int, mp: int, ml: int) -> int:
    coll = mem.read_name(cp, cl, _MAX_NAME, "collection name")
    vid = mem.read_name(ip, il, _MAX_ID, "vector id")
    mem.check(mp, ml, "metadata")
    vec = _vector(mem, vp, dim, state.quota)
    if isinstance(vec, int):
        return vec
    if coll is None or vid is None:
        return cap.Status.INVALID
    if ml > state.quota.max_metadata_bytes:
        return cap.Status.TOO_LARGE
    return _store(state, coll, vid, vec, mem.read(mp, ml, "metadata") if ml else b"")


def _store(state: _State, coll: str, vid: str, vec: np.ndarray, raw_meta: bytes) -> int:
    """Upsert one vector (``raw_meta`` JSON, empty for none): 0 or a negative status."""
    meta = None
    if raw_meta:
        try:
            meta = guestjson.loads(raw_meta)
        except (ValueError, UnicodeDecodeError):
            return cap.Status.INVALID
        if not isinstance(meta, dict):
            return cap.Status.INVALID
    try:
        state.vectors.upsert(coll, vid, vec, meta, state.quota)
    except StorageError as exc:
        return cap.Status.of(exc)
    return 0


def _search_block(state: _State, mem: cap.GuestMemory, cp: int, cl: int, vp: int, dim: int,
                  k: int, flt: Any) -> int:
    coll = mem.read_name(cp, cl, _MAX_NAME, "collection name")
    vec = _vector(mem, vp, dim, state.quota)
    if isinstance(vec, int) or coll is None:
        why = "vector too large" if vec == cap.Status.TOO_LARGE else "bad collection name or vector"
        name = "TOO_LARGE" if vec == cap.Status.TOO_LARGE else "INVALID"
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


def _search(state: _State, mem: cap.GuestMemory, cp: int, cl: int, vp: int, dim: int,
            k: int) -> int:
    return _search_block(state, mem, cp, cl, vp, dim, k, None)


def _query(state: _State, mem: cap.GuestMemory, cp: int, cl: int, vp: int, dim: int, k: int,
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


def _delete(state: _State, mem: cap.GuestMemory, cp: int, cl: int, ip: int, il: int) -> int:
    coll = mem.read_name(cp, cl, _MAX_NAME, "collection name")
    vid = mem.read_name(ip, il, _MAX_ID, "vector id")
    if coll is None or vid is None:
        return cap.Status.INVALID
    try:
        return 1 if state.vectors.delete(coll, vid) else 0
    except StorageError as exc:
        return cap.Status.of(exc)


# omnicore:plugin/vectors (sdk/wit/plugin.wit): the same operations for components, with
# the same limits; metadata and filters are JSON text ("" for none), search answers §4.5's
# JSON array.
_ERROR = cap.WitFunction.ERROR
_FAILURE = cap.WitFunction.FAILURE


def _wit_name(text: str, limit: int) -> bool:
    return 0 < len(text.encode("utf-8")) <= limit


def _wit_vector(vector: list[float], quota: VectorQuota) -> np.ndarray | int:
    if not vector:
        return cap.Status.INVALID
    if len(vector) > quota.max_dim:
        return cap.Status.TOO_LARGE
    return np.asarray(vector, dtype=_F32)


def _wit_upsert(state: _State, collection: str, vid: str, vector: list[float],
                metadata: str) -> dict[str, Any]:
    raw = metadata.encode("utf-8")
    vec = _wit_vector(vector, state.quota)
    if isinstance(vec, int):
        return cap.Status.wit_error(vec)
    if not (_wit_name(collection, _MAX_NAME) and _wit_name(vid, _MAX_ID)):
        return cap.Status.wit_error(cap.Status.INVALID)
    if len(raw) > state.quota.max_metadata_bytes:
        return cap.Status.wit_error(cap.Status.TOO_LARGE)
    status = _store(state, collection, vid, vec, raw)
    return cap.Status.wit_error(status) if status else {"ok": None}


def _failure(code: int, message: str) -> dict[str, Any]:
    return {"err": {"code": cap.Status.WIT_CASES[code], "message": message}}


def _wit_search(state: _State, collection: str, vector: list[float], k: int,
                filter: str) -> dict[str, Any]:
    vec = _wit_vector(vector, state.quota)
    if isinstance(vec, int):
        return _failure(vec, "vector too large" if vec == cap.Status.TOO_LARGE else "empty vector")
    if not _wit_name(collection, _MAX_NAME):
        return _failure(cap.Status.INVALID, "bad collection name")
    raw = filter.encode("utf-8")
    if len(raw) > _MAX_FILTER:
        return _failure(cap.Status.TOO_LARGE, f"filter over {_MAX_FILTER} bytes")
    flt = None
    if raw:
        try:
            flt = guestjson.loads(raw)
        except ValueError:
            return _failure(cap.Status.INVALID, "the filter is not JSON")
        if not isinstance(flt, dict):
            return _failure(cap.Status.INVALID, "the filter must be a JSON object")
    try:
        found = state.vectors.search_json(collection, vec, k, flt)
    except UnknownCollection as exc:
        return _failure(cap.Status.NOT_FOUND, str(exc))
    except BadVector as exc:
        return _failure(cap.Status.INVALID, str(exc))
    except StorageError:
        return _failure(cap.Status.UNAVAILABLE, "the vector store failed")
    return {"ok": found.decode("utf-8")}


def _wit_delete(state: _State, collection: str, vid: str) -> dict[str, Any]:
    if not (_wit_name(collection, _MAX_NAME) and _wit_name(vid, _MAX_ID)):
        return cap.Status.wit_error(cap.Status.INVALID)
    try:
        return {"ok": state.vectors.delete(collection, vid)}
    except StorageError as exc:
        return cap.Status.wit_error(cap.Status.of(exc))


WIT_FUNCTIONS = (
    cap.WitFunction("upsert", "func(collection: string, id: string, vector: list<f32>, "
                    f"metadata: string) -> result<_, {_ERROR}>", _wit_upsert),
    cap.WitFunction("search", "func(collection: string, vector: list<f32>, k: u32, "
                    f"filter: string) -> result<string, {_FAILURE}>", _wit_search),
    cap.WitFunction("delete", f"func(collection: string, id: string) -> result<bool, {_ERROR}>",
                    _wit_delete),
)


def capability(store: Callable[[cap.PluginContext], VectorStore],
               defaults: VectorQuota | None = None) -> cap.Capability:
    """The vectors capability over the store ``store(ctx)`` returns."""
    return LIMITS.declare(
        lambda ctx, quota: _State(store(ctx).for_plugin(ctx.plugin), quota), defaults,
        description="named f32 vector collections with cosine search (quotas in the grant)",
        functions=(
            cap.HostFunction("upsert", ("ptr", "len", "ptr", "len", "ptr", "i32", "ptr", "len"),
                             ("i32",), _upsert),
            cap.HostFunction("search", ("ptr", "len", "ptr", "i32", "i32"), ("i64",), _search),
            cap.HostFunction("query", ("ptr", "len", "ptr", "i32", "i32", "ptr", "len"), ("i64",),
                             _query),
            cap.HostFunction("delete", ("ptr", "len", "ptr", "len"), ("i32",), _delete),
        ),
        wit=WIT_FUNCTIONS,
    )


_standalone_stores: dict[str, VectorStore] = {}


def _standalone(ctx: cap.PluginContext) -> VectorStore:
    data_dir = standalone.data_dir(ctx, "vectors")
    key = str(data_dir)
    if key not in _standalone_stores:
        _standalone_stores[key] = VectorStore(shared_storage(data_dir).vectors,
                                              data_dir / "vectors")
    return _standalone_stores[key]


#: For plugin hosts without an app: the store in the host's ``data_dir``.
CAPABILITY = capability(_standalone)


def for_app(app: AppServices) -> cap.Capability:
    """The vectors capability on ``app.vectors``, ``capabilities.vectors`` as default quotas."""
    return capability(lambda _ctx: app.vectors, LIMITS.app_defaults(app.config.capabilities))
