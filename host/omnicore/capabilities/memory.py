"""``omnicore:memory`` (specs/abi.md §4.4): tiered memories recalled by relevance and recency.

The store is :class:`omnicore.storage.memory.MemoryStore`. ``remember(tier, item)`` takes
JSON ``{"text", "metadata"?, "ttl_s"?, "importance"?, "vector"?}``; ``recall(query)`` JSON
``{"query", "tiers"?, "limit"?, "filter"?, "vector"?}``. Grant options (app-wide defaults in
``capabilities.memory``): ``max_working``, ``max_short``, ``max_long`` (per-tier caps,
eviction of the least important), ``max_text_bytes``, ``max_metadata_bytes``,
``working_ttl_s``, ``short_ttl_s``. ``capabilities.memory.consolidate_every_s`` (600) sets
the consolidation interval.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import fields
from typing import Any

from omnicore.capabilities import guestjson, standalone
from omnicore.capabilities.options import GrantLimits
from omnicore.capabilities.types import AppServices
from omnicore.sandbox import capability as cap
from omnicore.storage import StorageError
from omnicore.storage.base import ValueTooLarge
from omnicore.storage.memory import BadMemory, MemoryPolicy, MemoryStore, PluginMemory

__all__ = ["CAPABILITY", "LIMITS", "capability", "for_app"]

#: The policy a grant (or ``capabilities.memory``, beside its ``consolidate_every_s``) sets.
LIMITS = GrantLimits("memory", MemoryPolicy(),
                     tuple(f.name for f in fields(MemoryPolicy) if f.name != "max_limit"),
                     other=("consolidate_every_s",))
#: The JSON of one item or query; text and metadata have their own, smaller limits.
_MAX_JSON = 4 * 1024 * 1024


def _json(mem: cap.GuestMemory, ptr: int, length: int, what: str) -> Any:
    mem.check(ptr, length, what)
    if length > _MAX_JSON:
        raise ValueTooLarge(f"{what} over {_MAX_JSON} bytes")
    try:
        value = guestjson.loads(mem.read(ptr, length, what))
    except (ValueError, UnicodeDecodeError):
        raise BadMemory(f"{what} is not JSON") from None
    if not isinstance(value, dict):
        raise BadMemory(f"{what} must be a JSON object")
    return value


def _store(memory: PluginMemory, tier: int, item: dict[str, Any]) -> int:
    """Remember ``item`` (§4.4's object) in ``tier``: the new id, or a negative status."""
    try:
        unknown = set(item) - {"text", "metadata", "ttl_s", "importance", "vector"}
        if unknown:
            raise BadMemory(f"unknown field {sorted(unknown)[0]!r}")
        text: Any = item.get("text")  # not a str: remember refuses it (INVALID)
        return memory.remember(tier, text, item.get("metadata"), item.get("ttl_s"),
                               item.get("importance", 0.5), item.get("vector"))
    except (StorageError, TypeError, ValueError) as exc:
        return cap.Status.of(exc)


def _remember(memory: PluginMemory, mem: cap.GuestMemory, tier: int, ptr: int, length: int) -> int:
    try:
        item = _json(mem, ptr, length, "memory item")
    except (StorageError, TypeError, ValueError) as exc:
        return cap.Status.of(exc)
    return _store(memory, tier, item)


def _find(memory: PluginMemory, q: dict[str, Any]) -> list[Any] | int:
    """The memories §4.4's query object ``q`` recalls, or a negative status."""
    try:
        unknown = set(q) - {"query", "tiers", "limit", "filter", "vector"}
        if unknown:
            raise BadMemory(f"unknown field {sorted(unknown)[0]!r}")
        tiers = q.get("tiers", [0, 1, 2])
        if not isinstance(tiers, list):
            raise BadMemory("tiers must be a list")
        return memory.recall(q.get("query", ""), tiers, q.get("limit", 10), q.get("filter"),
                             q.get("vector"))
    except (StorageError, TypeError, ValueError) as exc:
        return cap.Status.of(exc)


def _recall(memory: PluginMemory, mem: cap.GuestMemory, qp: int, ql: int, out: int, out_cap: int
            ) -> int:
    mem.check(out, out_cap, "output buffer")
    try:
        q = _json(mem, qp, ql, "recall query")
    except (StorageError, TypeError, ValueError) as exc:
        return cap.Status.of(exc)
    found = _find(memory, q)
    if isinstance(found, int):
        return found
    data = json.dumps([m.as_dict() for m in found], ensure_ascii=False,
                      separators=(",", ":")).encode()
    n = mem.write_result(data, out, out_cap)
    if n <= out_cap:  # a recall counts once, not again when the guest retries with a bigger buffer
        try:
            memory.touch([m.id for m in found])
        except StorageError:
            pass
    return n


def _forget(memory: PluginMemory, _mem: cap.GuestMemory, mid: int) -> int:
    try:
        return 1 if memory.forget(mid) else 0
    except StorageError:
        return cap.Status.UNAVAILABLE


# omnicore:plugin/memory (sdk/wit/plugin.wit): the same operations for components. The item
# and the query are §4.4's JSON, with the same limits; the tier is an enum.

_ERROR = cap.WitFunction.ERROR
_TIER = "enum { working, short-term, long-term }"
_TIERS = {"working": 0, "short-term": 1, "long-term": 2}


def _wit_object(text: str) -> dict[str, Any] | int:
    data = text.encode("utf-8")
    if len(data) > _MAX_JSON:
        return cap.Status.TOO_LARGE
    try:
        value = guestjson.loads(data)
    except ValueError:
        return cap.Status.INVALID
    return value if isinstance(value, dict) else cap.Status.INVALID


def _wit_remember(memory: PluginMemory, tier: str, item: str) -> dict[str, Any]:
    obj = _wit_object(item)
    status = obj if isinstance(obj, int) else _store(memory, _TIERS[tier], obj)
    return cap.Status.wit_error(status) if status < 0 else {"ok": status}


def _wit_recall(memory: PluginMemory, query: str) -> dict[str, Any]:
    q = _wit_object(query)
    found = q if isinstance(q, int) else _find(memory, q)
    if isinstance(found, int):
        return cap.Status.wit_error(found)
    try:
        memory.touch([m.id for m in found])
    except StorageError:
        pass
    return {"ok": json.dumps([m.as_dict() for m in found], ensure_ascii=False,
                             separators=(",", ":"))}


def _wit_forget(memory: PluginMemory, mid: int) -> dict[str, Any]:
    try:
        return {"ok": memory.forget(mid)}
    except StorageError:
        return cap.Status.wit_error(cap.Status.UNAVAILABLE)


WIT_FUNCTIONS = (
    cap.WitFunction("remember", f"func(tier: {_TIER}, item: string) -> result<s64, {_ERROR}>",
                    _wit_remember),
    cap.WitFunction("recall", f"func(query: string) -> result<string, {_ERROR}>", _wit_recall),
    cap.WitFunction("forget", f"func(id: s64) -> result<bool, {_ERROR}>", _wit_forget),
)


def capability(store: Callable[[cap.PluginContext], MemoryStore],
               defaults: MemoryPolicy | None = None) -> cap.Capability:
    """The memory capability over the store ``store(ctx)`` returns."""
    return LIMITS.declare(
        lambda ctx, policy: store(ctx).for_plugin(ctx.plugin, policy), defaults,
        description="tiered text memories recalled by relevance, recency and importance",
        functions=(
            cap.HostFunction("remember", ("i32", "ptr", "len"), ("i64",), _remember),
            cap.HostFunction("recall", ("ptr", "len", "ptr", "len"), ("i32",), _recall),
            cap.HostFunction("forget", ("i64",), ("i32",), _forget),
        ),
        wit=WIT_FUNCTIONS,
    )


#: For plugin hosts without an app (granting it there is a ConfigError that says so).
CAPABILITY = capability(standalone.needs_app(
    "memory", "which needs an app (OmniApp, or omnicore run)", key="grants.memory"))


def for_app(app: AppServices) -> cap.Capability:
    """The memory capability on ``app.memory``, ``capabilities.memory`` as defaults."""
    return capability(lambda _ctx: app.memory, LIMITS.app_defaults(app.config.capabilities))
