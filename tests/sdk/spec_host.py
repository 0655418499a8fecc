"""A test host for the capabilities the real host does not implement yet (kv, memory, vectors,
tasks, http, events, secrets), written straight from specs/abi.md §4.

It exists to test the SDKs' typed wrappers: the linker refuses an import whose type differs
from the spec's, and each function follows the spec's conventions (§3.2 caller buffers with a
second call when the value does not fit, §3.3 blocks allocated re-entrantly with the guest's
``omni_alloc``, status codes). Everything a plugin does is recorded in :class:`SpecState`.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnicore.capabilities import kv as kv_capability
from omnicore.capabilities.builtin import builtin_registry
from omnicore.sandbox import (
    Capability,
    CapabilityRegistry,
    GuestMemory,
    HostFunction,
    Limits,
    PluginModule,
    PluginRuntime,
    SandboxEngine,
    Status,
)
from omnicore.storage import SQLiteStorage

__all__ = [
    "MAX_VALUE_BYTES",
    "SPEC_NAMESPACES",
    "SpecState",
    "builtins_except_spec",
    "call_text",
    "probe_runtime",
    "real_registry",
    "runtime",
    "spec_capabilities",
]

MAX_VALUE_BYTES = 1500
SPEC_NAMESPACES = ("kv", "memory", "vectors", "tasks", "http", "events", "secrets")
TASK_HANDLERS = {"echo", "kv_probe"}


@dataclass
class SpecState:
    """What the plugin stored, published and requested, and how often each function ran."""

    kv: dict[str, bytes] = field(default_factory=dict)
    memories: dict[int, dict[str, Any]] = field(default_factory=dict)
    vectors: dict[str, dict[str, tuple[tuple[float, ...], Any]]] = field(default_factory=dict)
    tasks: dict[int, str | None] = field(default_factory=dict)
    events: list[tuple[str, bytes]] = field(default_factory=list)
    requests: list[tuple[dict[str, Any], bytes]] = field(default_factory=list)
    secrets: dict[str, bytes | None] = field(
        default_factory=lambda: {"token": b"s3cr3t", "unset": None})
    calls: Counter[str] = field(default_factory=Counter)
    next_id: int = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def spec_capabilities(state: SpecState) -> list[Capability]:
    """Capabilities kv, memory, vectors, tasks, http, events, secrets over ``state``."""

    def fn(ns: str, name: str, params: str, result: str, impl: Any) -> HostFunction:
        def counted(_: object, mem: GuestMemory, *args: int) -> int:
            state.calls[f"{ns}.{name}"] += 1
            return int(impl(mem, *args))

        return HostFunction(name, tuple(params.split()), (result,) if result else (), counted)

    def kv_get(mem: GuestMemory, kp: int, kl: int, out: int, cap: int) -> int:
        value = state.kv.get(mem.read_str(kp, kl))
        return Status.NOT_FOUND if value is None else mem.write_result(value, out, cap)

    def kv_set(mem: GuestMemory, kp: int, kl: int, vp: int, vl: int) -> int:
        if vl > MAX_VALUE_BYTES:
            return Status.TOO_LARGE
        state.kv[mem.read_str(kp, kl)] = mem.read(vp, vl)
        return 0

    def kv_delete(mem: GuestMemory, kp: int, kl: int) -> int:
        return 1 if state.kv.pop(mem.read_str(kp, kl), None) is not None else 0

    def kv_incr(mem: GuestMemory, kp: int, kl: int, delta: int, out: int) -> int:
        key = mem.read_str(kp, kl)
        try:
            value = int(state.kv.get(key, b"0")) + delta
        except ValueError:
            return Status.INVALID
        state.kv[key] = str(value).encode()
        mem.write(out, struct.pack("<q", value))
        return 0

    def kv_list(mem: GuestMemory, pp: int, pl: int, out: int, cap: int) -> int:
        prefix = mem.read_str(pp, pl)
        keys = sorted(k for k in state.kv if k.startswith(prefix))
        return mem.write_result(json.dumps(keys).encode(), out, cap)

    def remember(mem: GuestMemory, tier: int, ip: int, il: int) -> int:
        try:
            item = json.loads(mem.read(ip, il))
        except ValueError:
            return Status.INVALID
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            return Status.INVALID
        mid = state.new_id()
        state.memories[mid] = {"id": mid, "tier": tier, "text": item["text"],
                               "metadata": item.get("metadata", {}), "score": 1.0,
                               "created_at": 0}
        return mid

    def recall(mem: GuestMemory, qp: int, ql: int, out: int, cap: int) -> int:
        try:
            query = json.loads(mem.read(qp, ql))
        except ValueError:
            return Status.INVALID
        hits = [m for m in state.memories.values() if query["query"] in m["text"]]
        return mem.write_result(json.dumps(hits[: query.get("limit", 10)]).encode(), out, cap)

    def forget(mem: GuestMemory, mid: int) -> int:
        return 1 if state.memories.pop(mid, None) is not None else 0

    def v_upsert(mem: GuestMemory, cp: int, cl: int, ip: int, il: int, vp: int, dim: int,
                 mp: int, ml: int) -> int:
        coll = state.vectors.setdefault(mem.read_str(cp, cl), {})
        vec = struct.unpack(f"<{dim}f", mem.read(vp, 4 * dim))
        if any(len(v) != dim for v, _ in coll.values()):
            return Status.INVALID
        meta = json.loads(mem.read(mp, ml)) if ml else {}
        coll[mem.read_str(ip, il)] = (vec, meta)
        return 0

    def v_search(mem: GuestMemory, cp: int, cl: int, vp: int, dim: int, k: int) -> int:
        name = mem.read_str(cp, cl)
        if name not in state.vectors:
            return mem.alloc_result(f"NOT_FOUND: no collection {name!r}".encode(), error=True)
        query = struct.unpack(f"<{dim}f", mem.read(vp, 4 * dim))
        scored = sorted(((sum(a * b for a, b in zip(query, v, strict=True)), vid, meta)
                         for vid, (v, meta) in state.vectors[name].items()), reverse=True)
        hits = [{"id": vid, "score": s, "metadata": meta} for s, vid, meta in scored[:k]]
        return mem.alloc_result(json.dumps(hits).encode())

    def v_delete(mem: GuestMemory, cp: int, cl: int, ip: int, il: int) -> int:
        coll = state.vectors.get(mem.read_str(cp, cl))
        if coll is None:
            return Status.NOT_FOUND
        return 1 if coll.pop(mem.read_str(ip, il), None) is not None else 0

    def enqueue(mem: GuestMemory, hp: int, hl: int, pp: int, pl: int, delay: int) -> int:
        handler = mem.read_str(hp, hl)
        if handler not in TASK_HANDLERS or delay < 0:
            return Status.NOT_FOUND if handler not in TASK_HANDLERS else Status.INVALID
        tid = state.new_id()
        state.tasks[tid] = handler
        return tid

    def cancel(mem: GuestMemory, tid: int) -> int:
        if tid not in state.tasks:
            return Status.NOT_FOUND
        if state.tasks[tid] is None:
            return 0  # already cancelled: the spec's "already running/finished"
        state.tasks[tid] = None
        return 1

    def request(mem: GuestMemory, rp: int, rl: int, bp: int, bl: int) -> int:
        head = json.loads(mem.read(rp, rl))
        body = mem.read(bp, bl)
        state.requests.append((head, body))
        target = head.get("url") or f"connector:{head.get('connector')}{head.get('path')}"
        if "denied.example" in target:
            return mem.alloc_result(b"DENIED: host denied.example is not in the grant",
                                    error=True)
        resp_head = json.dumps({"status": 201, "headers": {"x-target": target,
                                                           "Content-Type": "text/plain"}})
        block = struct.pack("<I", len(resp_head)) + resp_head.encode() + b"echo:" + body
        return mem.alloc_result(block)

    def publish(mem: GuestMemory, tp: int, tl: int, pp: int, pl: int) -> int:
        state.events.append((mem.read_str(tp, tl), mem.read(pp, pl)))
        return 0

    def secret(mem: GuestMemory, np: int, nl: int, out: int, cap: int) -> int:
        name = mem.read_str(np, nl)
        if name not in state.secrets:
            return Status.DENIED
        value = state.secrets[name]
        return Status.NOT_FOUND if value is None else mem.write_result(value, out, cap)

    table = {
        "kv": [fn("kv", "get", "ptr len ptr len", "i32", kv_get),
               fn("kv", "set", "ptr len ptr len", "i32", kv_set),
               fn("kv", "delete", "ptr len", "i32", kv_delete),
               fn("kv", "incr", "ptr len i64 ptr", "i32", kv_incr),
               fn("kv", "list", "ptr len ptr len", "i32", kv_list)],
        "memory": [fn("memory", "remember", "i32 ptr len", "i64", remember),
                   fn("memory", "recall", "ptr len ptr len", "i32", recall),
                   fn("memory", "forget", "i64", "i32", forget)],
        "vectors": [fn("vectors", "upsert", "ptr len ptr len ptr i32 ptr len", "i32", v_upsert),
                    fn("vectors", "search", "ptr len ptr i32 i32", "i64", v_search),
                    fn("vectors", "delete", "ptr len ptr len", "i32", v_delete)],
        "tasks": [fn("tasks", "enqueue", "ptr len ptr len i64", "i64", enqueue),
                  fn("tasks", "cancel", "i64", "i32", cancel)],
        "http": [fn("http", "request", "ptr len ptr len", "i64", request)],
        "events": [fn("events", "publish", "ptr len ptr len", "i32", publish)],
        "secrets": [fn("secrets", "get", "ptr len ptr len", "i32", secret)],
    }
    return [Capability(name, funcs) for name, funcs in table.items()]


def real_registry() -> CapabilityRegistry:
    """The built-ins, with kv over its own in-memory SQLite storage (the real code path)."""
    store = SQLiteStorage(":memory:")
    return CapabilityRegistry([*(c for c in builtin_registry() if c.name != "kv"),
                               kv_capability.capability(lambda _ctx: store)])


def builtins_except_spec() -> list[Capability]:
    """The built-in capabilities this spec host does not stand in for."""
    return [c for c in builtin_registry() if c.name not in SPEC_NAMESPACES]


def runtime(engine: SandboxEngine, path: Path, config: Mapping[str, Any] | None = None,
            limits: Limits | None = None, grants: Any = None,
            registry: CapabilityRegistry | None = None) -> PluginRuntime:
    """A runtime of the plugin at ``path``: the real built-in capabilities (kv on a fresh
    in-memory SQLite storage), ``config`` and ``kv`` granted."""
    module = PluginModule.load(engine, path)
    return PluginRuntime(engine, module, registry or real_registry(),
                         grants={"config": {}, "kv": {}} if grants is None else grants,
                         config=config or {}, limits=limits or Limits())


def probe_runtime(engine: SandboxEngine, path: Path, state: SpecState,
                  limits: Limits | None = None) -> PluginRuntime:
    """The probe linked with the real log/config and the spec host for the rest."""
    registry = CapabilityRegistry([*builtins_except_spec(), *spec_capabilities(state)])
    grants = {"config": {}, **{ns: {} for ns in SPEC_NAMESPACES}}
    return runtime(engine, path, config={"db": {"host": "h", "port": 5432}}, grants=grants,
                   registry=registry, limits=limits)


def call_text(rt: PluginRuntime, handler: str, data: bytes = b"") -> str:
    return rt.call(handler, data).decode()
