"""``omnicore:kv`` (specs/abi.md §4.3): a durable key-value store per plugin.

Each plugin sees only its own keys: the host functions hold a
:class:`~omnicore.storage.KVStore` already bound to the calling plugin. Quotas come from the
grant (``max_bytes``, ``max_keys``, ``max_value_bytes``; app-wide defaults in
``capabilities.kv``) and are enforced inside the storage transaction, so a refused write
leaves nothing behind. Embedders seed or read a plugin's data with
``app.kv.for_plugin(name)``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from omnicore import telemetry
from omnicore.capabilities import standalone
from omnicore.capabilities.options import GrantLimits
from omnicore.capabilities.types import AppServices
from omnicore.core import jsoncodec
from omnicore.sandbox import capability as cap
from omnicore.storage import (
    KVQuota,
    KVStore,
    KVUsage,
    NotAnInteger,
    QuotaExceeded,
    Storage,
    StorageError,
    shared_storage,
)
from omnicore.storage.base import DEFAULT_QUOTA, MAX_KEY_BYTES, MAX_LIST_KEYS

__all__ = [
    "CAPABILITY",
    "KV",
    "LIMITS",
    "WIT_FUNCTIONS",
    "capability",
    "for_app",
]

#: The quotas a grant (or ``capabilities.kv``) sets.
LIMITS = GrantLimits("kv", KVQuota(), ("max_bytes", "max_keys", "max_value_bytes"))


#: The plugin call span's attribute counting its kv operations (omnicore.telemetry.count).
COUNTED = "omnicore.plugin.host_calls.kv"


class _Counted(KVStore):
    """A plugin's keys while tracing is on: each operation counted on its plugin call's span
    (:data:`COUNTED`) instead of being a span of its own (a kv call is microseconds). Bound
    only when tracing is on: off, the host functions reach the store itself."""

    def __init__(self, inner: KVStore) -> None:
        self.inner = inner
        self.plugin = inner.plugin

    def get(self, key: str) -> bytes | None:
        telemetry.count(COUNTED)
        return self.inner.get(key)

    def set(self, key: str, value: bytes, quota: KVQuota = DEFAULT_QUOTA) -> None:
        telemetry.count(COUNTED)
        self.inner.set(key, value, quota)

    def delete(self, key: str) -> bool:
        telemetry.count(COUNTED)
        return self.inner.delete(key)

    def incr(self, key: str, delta: int, quota: KVQuota = DEFAULT_QUOTA) -> int:
        telemetry.count(COUNTED)
        return self.inner.incr(key, delta, quota)

    def list(self, prefix: str = "", limit: int = MAX_LIST_KEYS) -> list[str]:
        telemetry.count(COUNTED)
        return self.inner.list(prefix, limit)

    def usage(self) -> KVUsage:
        return self.inner.usage()


class _State:
    __slots__ = ("quota", "store")

    def __init__(self, store: KVStore, quota: KVQuota) -> None:
        self.store = _Counted(store) if telemetry.ON else store
        self.quota = quota


def _key(mem: cap.GuestMemory, ptr: int, length: int) -> str | None:
    return mem.read_name(ptr, length, MAX_KEY_BYTES, "kv key")


def _valid_key(key: str) -> bool:
    return 0 < len(key.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES


# The operations, each once: the ABI v1 functions below read their arguments out of guest
# memory and the WIT ones (components) get them lifted, and both land here. Each returns
# its value or a negative Status.

def _read(state: _State, key: str) -> bytes | int | None:
    try:
        return state.store.get(key)
    except StorageError:
        return cap.Status.UNAVAILABLE


def _store(state: _State, key: str, value: bytes) -> int:
    try:
        state.store.set(key, value, state.quota)
    except StorageError as exc:
        return cap.Status.of(exc)
    return 0


def _remove(state: _State, key: str) -> int:
    try:
        return 1 if state.store.delete(key) else 0
    except StorageError:
        return cap.Status.UNAVAILABLE


def _add(state: _State, key: str, delta: int) -> tuple[int, int]:
    """(status, new value)."""
    try:
        return 0, state.store.incr(key, delta, state.quota)
    except NotAnInteger:
        return cap.Status.INVALID, 0
    except QuotaExceeded:
        return cap.Status.QUOTA, 0
    except StorageError:
        return cap.Status.UNAVAILABLE, 0


def _keys(state: _State, prefix: str) -> list[str] | int:
    if len(prefix.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        return cap.Status.INVALID
    try:
        return state.store.list(prefix, MAX_LIST_KEYS)
    except StorageError:
        return cap.Status.UNAVAILABLE


# get and set first try the common case inline (every pointer inside memory as last seen, a
# key of legal length): it is most of a plugin's kv get (bench_capabilities.py). Anything
# else takes the checked path below it, which traps or refuses exactly as before.

def _get(state: _State, mem: cap.GuestMemory, kptr: int, klen: int, out: int, out_cap: int) -> int:
    size = mem.size
    if 0 < klen <= MAX_KEY_BYTES and kptr + klen <= size and out + out_cap <= size:
        try:
            key = str(mem.view[kptr:kptr + klen], "utf-8")
        except UnicodeDecodeError:
            return cap.Status.INVALID
        try:
            value = state.store.get(key)
        except StorageError:
            return cap.Status.UNAVAILABLE
        if value is None:
            return cap.Status.NOT_FOUND
        n = len(value)
        if n <= out_cap:
            mem.view[out:out + n] = value
        return n
    return _get_checked(state, mem, kptr, klen, out, out_cap)


def _get_checked(state: _State, mem: cap.GuestMemory, kptr: int, klen: int, out: int,
                 out_cap: int) -> int:
    key = _key(mem, kptr, klen)
    mem.check(out, out_cap, "output buffer")
    if key is None:
        return cap.Status.INVALID
    value = _read(state, key)
    if value is None:
        return cap.Status.NOT_FOUND
    if isinstance(value, int):
        return value
    return mem.write_result(value, out, out_cap)


def _set(state: _State, mem: cap.GuestMemory, kptr: int, klen: int, vptr: int, vlen: int) -> int:
    size = mem.size
    if 0 < klen <= MAX_KEY_BYTES and kptr + klen <= size and vptr + vlen <= size:
        try:
            key = str(mem.view[kptr:kptr + klen], "utf-8")
        except UnicodeDecodeError:
            return cap.Status.INVALID
        if vlen > state.quota.max_value_bytes:
            return cap.Status.TOO_LARGE
        return _store(state, key, mem.view[vptr:vptr + vlen].tobytes())
    return _set_checked(state, mem, kptr, klen, vptr, vlen)


def _set_checked(state: _State, mem: cap.GuestMemory, kptr: int, klen: int, vptr: int,
                 vlen: int) -> int:
    key = _key(mem, kptr, klen)
    mem.check(vptr, vlen, "kv value")
    if key is None:
        return cap.Status.INVALID
    if vlen > state.quota.max_value_bytes:  # refuse before copying megabytes out of the guest
        return cap.Status.TOO_LARGE
    return _store(state, key, mem.read(vptr, vlen, "kv value"))


def _delete(state: _State, mem: cap.GuestMemory, kptr: int, klen: int) -> int:
    key = _key(mem, kptr, klen)
    if key is None:
        return cap.Status.INVALID
    return _remove(state, key)


def _incr(state: _State, mem: cap.GuestMemory, kptr: int, klen: int, delta: int, out: int) -> int:
    key = _key(mem, kptr, klen)
    mem.check(out, 8, "incr output")
    if key is None:
        return cap.Status.INVALID
    status, value = _add(state, key, delta)
    if status == 0:
        mem.write(out, struct.pack("<q", value))
    return status


def _list(state: _State, mem: cap.GuestMemory, pptr: int, plen: int, out: int, out_cap: int) -> int:
    mem.check(pptr, plen, "kv prefix")
    mem.check(out, out_cap, "output buffer")
    if plen > MAX_KEY_BYTES:
        return cap.Status.INVALID
    try:
        prefix = mem.read(pptr, plen, "kv prefix").decode("utf-8")
    except UnicodeDecodeError:
        return cap.Status.INVALID
    keys = _keys(state, prefix)
    if isinstance(keys, int):
        return keys
    return mem.write_result(jsoncodec.dumps(keys), out, out_cap)


# omnicore:plugin/kv (sdk/wit/plugin.wit): the same operations for components.

_ERROR = cap.WitFunction.ERROR


def _wit_get(state: _State, key: str) -> dict[str, Any]:
    if not _valid_key(key):
        return cap.Status.wit_error(cap.Status.INVALID)
    value = _read(state, key)
    return cap.Status.wit_error(value) if isinstance(value, int) else {"ok": value}


def _wit_set(state: _State, key: str, value: bytes) -> dict[str, Any]:
    if not _valid_key(key):
        return cap.Status.wit_error(cap.Status.INVALID)
    if len(value) > state.quota.max_value_bytes:
        return cap.Status.wit_error(cap.Status.TOO_LARGE)
    status = _store(state, key, value)
    return cap.Status.wit_error(status) if status else {"ok": None}


def _wit_delete(state: _State, key: str) -> dict[str, Any]:
    if not _valid_key(key):
        return cap.Status.wit_error(cap.Status.INVALID)
    status = _remove(state, key)
    return cap.Status.wit_error(status) if status < 0 else {"ok": status == 1}


def _wit_incr(state: _State, key: str, delta: int) -> dict[str, Any]:
    if not _valid_key(key):
        return cap.Status.wit_error(cap.Status.INVALID)
    status, value = _add(state, key, delta)
    return cap.Status.wit_error(status) if status else {"ok": value}


def _wit_list(state: _State, prefix: str) -> dict[str, Any]:
    keys = _keys(state, prefix)
    return cap.Status.wit_error(keys) if isinstance(keys, int) else {"ok": keys}


WIT_FUNCTIONS = (
    cap.WitFunction("get", f"func(key: string) -> result<option<list<u8>>, {_ERROR}>", _wit_get),
    cap.WitFunction("set", f"func(key: string, value: list<u8>) -> result<_, {_ERROR}>", _wit_set),
    cap.WitFunction("delete", f"func(key: string) -> result<bool, {_ERROR}>", _wit_delete),
    cap.WitFunction("incr", f"func(key: string, delta: s64) -> result<s64, {_ERROR}>", _wit_incr),
    cap.WitFunction("list", f"func(prefix: string) -> result<list<string>, {_ERROR}>", _wit_list),
)


def capability(storage_for: Callable[[cap.PluginContext], Storage],
               defaults: KVQuota | None = None) -> cap.Capability:
    """The kv capability over the storage ``storage_for(ctx)`` returns."""
    return LIMITS.declare(
        lambda ctx, quota: _State(storage_for(ctx).kv(ctx.plugin), quota), defaults,
        description="a durable key-value store of the plugin's own (quotas in the grant)",
        functions=(
            cap.HostFunction("get", ("ptr", "len", "ptr", "len"), ("i32",), _get),
            cap.HostFunction("set", ("ptr", "len", "ptr", "len"), ("i32",), _set),
            cap.HostFunction("delete", ("ptr", "len"), ("i32",), _delete),
            cap.HostFunction("incr", ("ptr", "len", "i64", "ptr"), ("i32",), _incr),
            cap.HostFunction("list", ("ptr", "len", "ptr", "len"), ("i32",), _list),
        ),
        wit=WIT_FUNCTIONS,
    )


def _standalone(ctx: cap.PluginContext) -> Storage:
    return shared_storage(standalone.data_dir(
        ctx, "kv", keep="it", hint=" (pass data_dir=..., or run it in an app)"))


#: For plugin hosts without an app: the storage in the host's ``data_dir``.
CAPABILITY = capability(_standalone)


class KV:
    """``app.kv``: read and seed plugins' keys from Python (no quotas: you are the operator)."""

    def __init__(self, storage: Callable[[], Storage]) -> None:
        self._storage = storage

    def for_plugin(self, plugin: str) -> KVStore:
        """The keys of ``plugin``: ``get``, ``set``, ``delete``, ``incr``, ``list``, ``usage``."""
        if not plugin:
            raise ValueError("for_plugin() needs a plugin name")
        return self._storage().kv(plugin)

    def plugins(self) -> list[str]:
        """Plugins that have at least one key."""
        return self._storage().kv_plugins()


def for_app(app: AppServices) -> cap.Capability:
    """The kv capability on ``app.storage``, with ``capabilities.kv`` as default quotas."""
    return capability(lambda _ctx: app.storage, LIMITS.app_defaults(app.config.capabilities))
