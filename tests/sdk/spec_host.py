"""The SDK tests' host: the real one where it exists, spec stand-ins where it does not yet.

``omnicore:tasks`` and ``omnicore:events`` are the real capabilities (:class:`HostedProbe`:
a real :class:`PluginHost` on a real :class:`OmniApp` that is never started, so an enqueued
task stays queued and a published event stays in the event log, exactly as the SDK sent
them). kv, memory, vectors, http and secrets are written here straight from specs/abi.md §4
to test the SDKs' typed wrappers: the linker refuses an import whose type differs from the
spec's, and each function follows the spec's conventions (§3.2 caller buffers with a second
call when the value does not fit, §3.3 blocks allocated re-entrantly with the guest's
``omni_alloc``, status codes). What a plugin does there is recorded in :class:`SpecState`.
"""

from __future__ import annotations

import json
import shutil
import struct
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnicore.app import OmniApp
from omnicore.capabilities import events as events_capability
from omnicore.capabilities import kv as kv_capability
from omnicore.capabilities import tasks as tasks_capability
from omnicore.capabilities.builtin import builtin_registry
from omnicore.plugins.host import PluginHost
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
from omnicore.storage import SQLiteStorage, Task

__all__ = [
    "MAX_VALUE_BYTES",
    "SPEC_NAMESPACES",
    "HostedProbe",
    "SpecState",
    "builtins_except_spec",
    "call_text",
    "probe_runtime",
    "real_registry",
    "runtime",
    "spec_capabilities",
]

MAX_VALUE_BYTES = 1500
SPEC_NAMESPACES = ("kv", "memory", "vectors", "http", "secrets")
#: Bound to the hosted probe's app: what the real host does with them.
REAL_NAMESPACES = ("tasks", "events")


@dataclass
class SpecState:
    """What the plugin stored, published and requested, and how often each function ran."""

    kv: dict[str, bytes] = field(default_factory=dict)
    memories: dict[int, dict[str, Any]] = field(default_factory=dict)
    vectors: dict[str, dict[str, tuple[tuple[float, ...], Any]]] = field(default_factory=dict)
    requests: list[tuple[dict[str, Any], bytes]] = field(default_factory=list)
    secrets: dict[str, bytes | None] = field(
        default_factory=lambda: {"token": b"s3cr3t", "unset": None})
    calls: Counter[str] = field(default_factory=Counter)
    next_id: int = 1

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def spec_capabilities(state: SpecState) -> list[Capability]:
    """Capabilities kv, memory, vectors, http, secrets over ``state``."""

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
        "http": [fn("http", "request", "ptr len ptr len", "i64", request)],
        "secrets": [fn("secrets", "get", "ptr len ptr len", "i32", secret)],
    }
    return [Capability(name, funcs) for name, funcs in table.items()]


def real_registry() -> CapabilityRegistry:
    """The built-ins, with kv over its own in-memory SQLite storage (the real code path)."""
    store = SQLiteStorage(":memory:")
    return CapabilityRegistry([*(c for c in builtin_registry() if c.name != "kv"),
                               kv_capability.capability(lambda _ctx: store)])


def builtins_except_spec() -> list[Capability]:
    """The built-in capabilities this spec host does not stand in for (tasks and events are
    bound by :class:`HostedProbe`)."""
    return [c for c in builtin_registry()
            if c.name not in SPEC_NAMESPACES and c.name not in REAL_NAMESPACES]


class HostedProbe:
    """A plugin in a real :class:`PluginHost` whose app (real ``app.jobs``, event bus and
    storage) is never started: tasks wait in the queue, events stay in the event log.

    Quacks like the :class:`PluginRuntime` the tests call: ``call`` goes through the host,
    the rest is the serving runtime's.
    """

    def __init__(self, engine: SandboxEngine, path: Path, spec: list[Capability], grants: Any,
                 config: Mapping[str, Any] | None = None, limits: Limits | None = None) -> None:
        self._data_dir = tempfile.mkdtemp(prefix="sdk-probe-")
        self.app = OmniApp("sdk-probe", builtin_extensions=[], entry_points=False,
                           default_modules=False, environ={},
                           overrides={"data_dir": self._data_dir})
        caps = [*builtins_except_spec(), *spec, tasks_capability.for_app(self.app),
                events_capability.for_app(self.app)]
        # Tests make a handler fail on purpose, again and again: no breaker in the way.
        self.host = PluginHost(engine=engine, capabilities=lambda: caps,
                               events=self.app.events.publish, failure_threshold=1 << 30)
        self.app.plugins = self.host
        self.name = self.host.load(path, grants=grants, config=config, limits=limits).name

    def call(self, handler: str, data: bytes = b"") -> bytes:
        return self.host.call(self.name, handler, data)

    @property
    def log(self) -> Any:
        return self.host.logs(self.name)

    def __getattr__(self, name: str) -> Any:
        # Everything else (limits, stats(), instances_discarded...) is the serving runtime's:
        # the host reports calls, not instances, and the tests look at both.
        version = self.host._entry(self.name).version
        assert version is not None, self.host.get(self.name).last_error
        return getattr(version.runtime, name)

    def tasks(self) -> list[Task]:
        """What the plugin enqueued, oldest first."""
        return list(reversed(self.app.jobs.list(plugin=self.name)))

    def events(self) -> list[tuple[str, bytes]]:
        """What the plugin published, oldest first, as the guest named it (without the
        ``plugin.<name>.`` the host puts in front)."""
        prefix = f"plugin.{self.name}."
        recent = self.app.storage.events.recent(1000, topic_prefix=prefix)
        return [(r.topic.removeprefix(prefix), r.payload) for r in reversed(recent)]

    def close(self) -> None:
        self.host.close()
        self.app.storage.close()
        shutil.rmtree(self._data_dir, ignore_errors=True)

    def __enter__(self) -> HostedProbe:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


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
                  limits: Limits | None = None) -> HostedProbe:
    """The probe on the real host (log, config, tasks, events) with the spec host's rest."""
    grants = {"config": {}, "events": {"publish": ["order.*"]},
              **{ns: {} for ns in (*SPEC_NAMESPACES, "tasks")}}
    return HostedProbe(engine, path, spec_capabilities(state), grants,
                       config={"db": {"host": "h", "port": 5432}}, limits=limits)


def call_text(rt: PluginRuntime | HostedProbe, handler: str, data: bytes = b"") -> str:
    return rt.call(handler, data).decode()
