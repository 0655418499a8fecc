"""Serving an unmodified ``wasi:http/proxy`` component on a route (issue 65, deliverable 1;
specs/http-routes.md "Proxy components").

A route whose plugin is a component exporting ``wasi:http/incoming-handler`` is answered by
calling its ``handle(request, response-out)`` with a request the host made of the HTTP
request (.wasihttp's host resources), then reading back the response the guest set: its
status, headers and body (within the route's ``max_response_bytes``).

Instances are the proxy's own (linked to the host's ``wasi:http``, never to wasmtime's WASI):
one per call in flight, kept for the next request when the call ended well (a
componentize-py component serves many; at most :data:`THREADS` kept idle: a new instance
per request costs 1-4 ms of CPU), discarded after any failure. A component whose
``producers`` section names a toolchain of :data:`ONE_REQUEST_PER_INSTANCE` (componentize-js:
StarlingMonkey answers the first request an instance gets and returns from every later
``handle`` without setting a response) gets a fresh instance for every request. Each call's epoch
deadline is the plugin's ``limits.timeout_ms``, armed through the deadline's door
(sandbox/deadline.py); the route's own deadline answers 504 at once (server.py).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

import wasmtime
from wasmtime import component as cm

from omnicore.routes import wasihttp
from omnicore.routes.wasihttp import Exchange, Table
from omnicore.sandbox.deadline import arm
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.pluginlog import PluginLog

__all__ = ["HANDLER", "ONE_REQUEST_PER_INSTANCE", "THREADS", "ProxyComponent",
           "announced_trailers", "exports_handler", "one_request_per_instance", "trailer_fields"]

log = logging.getLogger("omnicore.routes")

#: Threads that run proxy calls (every proxy plugin's together), so calls in flight at once.
THREADS = 16
#: The interface a proxy component exports (any 0.2.x version).
HANDLER = "wasi:http/incoming-handler@0.2"


def exports_handler(exports: list[str] | tuple[str, ...]) -> str | None:
    """The exported ``wasi:http/incoming-handler`` name among ``exports``, or None."""
    for name in exports:
        if name.startswith(HANDLER):
            return name
    return None


#: Toolchains (a ``producers`` section's ``processed-by`` name) whose proxy components answer
#: one request per instance: componentize-js (0.23: StarlingMonkey's fetch event is dispatched
#: once; a later ``handle`` on the same instance returns without setting a response).
ONE_REQUEST_PER_INSTANCE = frozenset({"ComponentizeJS"})


def one_request_per_instance(processed_by: tuple[str, ...]) -> str | None:
    """The toolchain of :data:`ONE_REQUEST_PER_INSTANCE` among a component's ``producers``
    tools (:attr:`ComponentModule.processed_by`, read from the bytes it was compiled from),
    or None."""
    return next((t for t in processed_by if t in ONE_REQUEST_PER_INSTANCE), None)


#: Fields a trailer may not carry (RFC 9110 §6.5.1: framing, routing, authentication,
#: response control, content metadata) and hop-by-hop ones: dropped from a guest's trailers.
NOT_TRAILERS = frozenset({
    "age", "authorization", "cache-control", "connection", "content-encoding",
    "content-length", "content-range", "content-type", "date", "expect", "expires", "host",
    "keep-alive", "location", "max-forwards", "pragma", "proxy-authenticate",
    "proxy-authorization", "proxy-connection", "range", "retry-after", "set-cookie", "te",
    "trailer", "transfer-encoding", "upgrade", "vary", "www-authenticate"})


def trailer_fields(trailers: wasihttp.Fields | None) -> list[tuple[bytes, bytes]]:
    """A guest's response trailers as the server sends them: names lower-case, the fields a
    trailer may not carry dropped (none: an empty list)."""
    if trailers is None:
        return []
    return [(name.lower().encode("ascii"), value) for name, value in trailers.entries
            if name.lower() not in NOT_TRAILERS]


def announced_trailers(headers: wasihttp.Fields | None) -> list[bytes]:
    """The trailer names a guest's response announces in its ``trailer`` header (those a
    trailer may carry), lower-case."""
    if headers is None:
        return []
    names = [n.strip().lower() for v in headers.get("trailer")
             for n in v.decode("latin-1").split(",")]
    return [n.encode("ascii") for n in names if n and n not in NOT_TRAILERS]


class _ProxyFailed(Exception):
    """The call failed: ``status`` 500 (a trap, an error) or 504 (the plugin's deadline)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class _Instance:
    store: wasmtime.Store
    handle: Any
    table: Table


class ProxyComponent:
    """A proxy component's instances, and :meth:`serve` to answer one request. Thread-safe."""

    def __init__(self, name: str, engine: SandboxEngine, component: cm.Component,
                 limits: Limits, log: PluginLog, send: wasihttp.Send | None = None,
                 *, processed_by: tuple[str, ...] = ()) -> None:
        self.name = name
        #: The toolchain whose components answer one request per instance (of the
        #: component's producers, ``processed_by``); None: instances are reused.
        self.one_shot = one_request_per_instance(processed_by)
        #: Outgoing requests (the plugin's ``http`` grant); None: each one refused.
        self.send = send
        self.engine = engine
        self.component = component
        self.limits = limits
        self.log = log
        eng = engine.components
        ctype = component.type
        imports = list(ctype.imports(eng))
        exports = list(ctype.exports(eng))
        handler = exports_handler(exports)
        if handler is None:
            raise ValueError(f"plugin {name!r} exports no wasi:http/incoming-handler")
        self.interface = handler
        self.linker = cm.Linker(eng)
        wasihttp.link_proxy(self.linker, imports, self._stdout, self._stderr)
        # What the host does not define (another WASI interface, a socket's functions) is
        # linked, and traps if used.
        self.linker.define_unknown_imports_as_traps(component)
        self._idle: list[_Instance] = []
        self._lock = threading.Lock()
        self._ticks = engine.deadline_ticks(limits.timeout_ms)
        self.instances_made = 0

    def _stdout(self, data: bytes) -> bool:
        self.log.write("info", data.decode("utf-8", "replace").rstrip("\n"))
        return True

    def _stderr(self, data: bytes) -> bool:
        self.log.write("warn", data.decode("utf-8", "replace").rstrip("\n"))
        return True

    def _new(self, cap: int) -> _Instance:
        store = wasmtime.Store(self.engine.components)
        store.set_limits(memory_size=self.limits.max_memory_bytes,
                         table_elements=self.limits.max_table_elements)
        table = Table(cap, self.log.write)
        table.send = self.send
        table.deadline = time.monotonic() + self.limits.timeout_ms / 1000
        arm(self.engine, store, self._ticks)
        wasihttp.enter(table)
        try:
            instance = self.linker.instantiate(store, self.component)
        except Exception as exc:  # a trap, or a host function's refusal as itself
            raise _ProxyFailed(500, f"the component did not start: {_first_line(exc)}") \
                from None
        finally:
            wasihttp.enter(None)
        idx = instance.get_export_index(store, self.interface)
        fidx = instance.get_export_index(store, "handle", idx) if idx is not None else None
        func = instance.get_func(store, fidx) if fidx is not None else None
        if func is None:
            raise _ProxyFailed(500, f"{self.interface} has no function 'handle'")
        self.instances_made += 1
        return _Instance(store, func, table)

    def serve(self, exchange: Exchange) -> Exchange:
        """Call ``handle`` with ``exchange``'s request; the exchange, answered or not.
        Raises _ProxyFailed when the call failed."""
        if time.monotonic() >= exchange.deadline:
            raise _ProxyFailed(504, "the route's deadline passed before a thread was free")
        with self._lock:
            inst = self._idle.pop() if self._idle else None
        if inst is None:
            inst = self._new(exchange.cap)
        table = inst.table
        table.cap = exchange.cap
        table.field_bytes = 0  # a budget per request (wasihttp.MAX_FIELD_BYTES)
        mark = table.next
        request, outparam = wasihttp.new_request(table, exchange)
        start = self.engine.epoch
        table.deadline = time.monotonic() + self.limits.timeout_ms / 1000
        arm(self.engine, inst.store, self._ticks)
        wasihttp.enter(table)
        keep = False
        try:
            inst.handle(inst.store, request, outparam)
            inst.handle.post_return(inst.store)
            keep = True
        except (wasmtime.WasmtimeError, wasihttp._Trap) as exc:
            # (A host function's refusal comes back as itself: wasmtime-py re-raises the
            # Python exception a host function raised, not the trap it made of it.)
            late = self.engine.epoch - start >= self._ticks - 1 or \
                time.monotonic() >= table.deadline
            if late:
                raise _ProxyFailed(504, f"the handler ran past the plugin's deadline "
                                       f"({self.limits.timeout_ms} ms)") from None
            raise _ProxyFailed(500, f"the handler trapped: {_first_line(exc)}") from None
        except Exception as exc:  # a host function of ours failed: the guest trapped on it
            log.exception("plugin %r: a wasi:http host function failed", self.name)
            raise _ProxyFailed(500, f"a host function failed: {type(exc).__name__}") from None
        finally:
            wasihttp.enter(None)
            # What this request made and the guest still holds is dropped with it: nothing
            # of one request reaches the next; an instance whose guest hoards the handles is
            # retired (wasihttp.Table.forget).
            if keep and self.one_shot is None and table.forget(mark):
                with self._lock:  # at most THREADS kept idle (one per call in flight)
                    if len(self._idle) < THREADS:
                        self._idle.append(inst)
            else:
                inst.table.objects.clear()  # the store goes; its handles with it
        return exchange

    def close(self) -> None:
        with self._lock:
            self._idle.clear()


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    cause = text.rfind("Caused by:")
    if cause >= 0:
        return text[cause + len("Caused by:"):].strip().splitlines()[0].strip()
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__

