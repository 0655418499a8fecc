"""``omnicore:sql`` (specs/abi.md §4.10): the plugin-facing door onto the app's PostgreSQL
and MySQL/MariaDB connectors (:mod:`omnicore.egress.db`).

``query`` and ``execute`` take the connector's name and a JSON request ``{"sql", "params",
"tx"?}`` and answer a §3.3 block (JSON), or ``E = 1`` with ``"DENIED: ..."``, ``"INVALID:
..."``, ``"QUOTA: ..."``, ``"TOO_LARGE: ..."``, ``"UNAVAILABLE: ..."``. ``begin`` opens a
transaction that lives within the running call: the instance's ``call_ends`` rolls back
whatever the call leaves open, whether it returned, trapped or ran out of time.

The grant names the connectors (``sql: {connectors: [orders]}``); the plugin never sees a
URL or a password, and every statement ends by the call's deadline.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

import orjson

from omnicore import telemetry
from omnicore.capabilities import guestjson
from omnicore.capabilities.types import AppServices
from omnicore.core.jsoncodec import _DIGITS_AS_ZERO, _LONG_NUMBER
from omnicore.egress.db import Databases
from omnicore.egress.refused import Refused
from omnicore.errors import ConfigError
from omnicore.sandbox.capability import (
    Capability,
    GuestMemory,
    HostFunction,
    PluginContext,
    Status,
    WitFunction,
    refusal_block,
    wit_failure,
)

__all__ = ["CAPABILITY", "Bound", "binder", "capability", "check_connectors_grant",
           "connector_call", "for_app", "wit_connector_call"]

KINDS = ("postgres", "mysql")
#: The largest request JSON a guest may pass (the statement and its parameters).
MAX_REQUEST = 16 << 20
_CODES = {"NOT_FOUND": Status.NOT_FOUND, "DENIED": Status.DENIED, "INVALID": Status.INVALID,
          "QUOTA": Status.QUOTA, "UNAVAILABLE": Status.UNAVAILABLE,
          "TOO_LARGE": Status.TOO_LARGE}
_handles = itertools.count(1)
_handles_lock = threading.Lock()


def check_connectors_grant(name: str) -> Callable[[Mapping[str, Any]], None]:
    """The grant check of ``sql`` and ``redis``: ``{connectors: [names]}`` and nothing else."""

    def check(options: Mapping[str, Any]) -> None:
        unknown = sorted(set(options) - {"connectors"})
        if unknown:
            raise ConfigError(f"grant {name!r} has no option {unknown[0]!r} (known: "
                              "connectors)", key=f"grant.{name}.{unknown[0]}")
        value = options.get("connectors", [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"grant.{name}.connectors must be a list of connector names",
                              key=f"grant.{name}.connectors", value=value)

    return check


class Bound:
    """A plugin's grant of ``sql`` or ``redis``: the connectors it may name."""

    __slots__ = ("allowed", "databases", "kinds", "plugin")

    def __init__(self, ctx: PluginContext, databases: Databases, kinds: tuple[str, ...],
                 capability: str) -> None:
        self.plugin = ctx.plugin
        self.databases = databases
        self.kinds = kinds
        self.allowed = frozenset(ctx.grant.get("connectors", ()))
        for name in sorted(self.allowed):
            connector = databases.connectors.get(name)
            if connector is None or connector.kind not in kinds:
                raise ConfigError(f"grant.{capability}.connectors names {name!r}, which is not "
                                  f"a {' or '.join(kinds)} connector of this app "
                                  "(connectors.<name>.kind)",
                                  key=f"grant.{capability}.connectors", value=name)
            # The pool owes each granted plugin a connection from its grant on (specs/abi.md
            # §4.10, Pool and fairness), not only from its first statement.
            reserve = getattr(databases.backend(name, kinds), "reserve", None)
            if reserve is not None:
                reserve(self.plugin)

    def backend(self, name: str) -> Any:
        if name not in self.allowed:
            raise Refused("DENIED", f"connector {name[:128]} is not granted")
        return self.databases.backend(name, self.kinds)


def binder(databases: Databases | None, kinds: tuple[str, ...], capability: str
           ) -> Callable[[PluginContext], Bound]:
    """The ``bind`` of ``sql`` or ``redis``: a :class:`Bound` over the app's ``databases``
    (none: a host without an app, which has no connectors to grant)."""
    def bind(ctx: PluginContext) -> Bound:
        if databases is None:
            raise ConfigError(f"plugin {ctx.plugin!r}: connectors are an app's (omnicore.yaml "
                              "and its secrets): run the plugin in an app (--app DIR)",
                              key=f"grant.{capability}")
        return Bound(ctx, databases, kinds, capability)

    return bind


def connector_name(mem: GuestMemory, p: int, n: int) -> str:
    if n > 256:
        raise Refused("INVALID", "a connector name is at most 256 bytes")
    try:
        return mem.read(p, n, "connector").decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("INVALID", "the connector name is not UTF-8") from None


def _too_large(size: int) -> None:
    if size > MAX_REQUEST:
        raise Refused("TOO_LARGE", f"the request is larger than {MAX_REQUEST} bytes")


#: How deeply a request may nest (its ``params``' ``$json`` values).
_MAX_DEPTH = 64


def _parsed(raw: bytes | str) -> dict[str, Any]:
    """The request JSON ``raw``: an object.

    :func:`guestjson.request`'s common case first, with the same outcome: bytes with at most
    :data:`_MAX_DEPTH` brackets (so nested no deeper) and no run of 19 digits (an integer
    orjson may not read as Python does) are orjson's to parse, which is what
    ``guestjson.request`` would return for them; anything else, and whatever orjson refuses,
    goes the whole way. Five Python calls fewer per statement (bench/bench_connectors.py)."""
    if raw.__class__ is bytes and raw.count(b"[") + raw.count(b"{") <= _MAX_DEPTH \
            and _LONG_NUMBER not in raw.translate(_DIGITS_AS_ZERO):
        try:
            req = orjson.loads(raw)
        except orjson.JSONDecodeError:
            req = guestjson.request(raw, max_depth=_MAX_DEPTH)
    else:
        req = guestjson.request(raw, max_depth=_MAX_DEPTH)
    if not isinstance(req, dict):
        raise Refused("INVALID", "the request must be a JSON object")
    return req


def _guest_request(mem: GuestMemory, p: int, n: int) -> dict[str, Any]:
    """The request JSON at ``(p, n)`` in guest memory: an object (a span out of bounds traps,
    however large; one in bounds past :data:`MAX_REQUEST` is TOO_LARGE, unread)."""
    if n > MAX_REQUEST:
        mem.check(p, n, "request")
        _too_large(n)
    return _parsed(mem.read(p, n, "request"))


#: What a call on a connector does with the connector's name and the request: its answer.
Run = Callable[[str, dict[str, Any]], bytes]


def connector_call(mem: GuestMemory, cp: int, cl: int, rp: int, rl: int, run: Run) -> int:
    """A §3.3 call on connector ``(cp, cl)`` with request ``(rp, rl)``: ``run``'s answer, or
    the refusal's error block."""
    try:
        name = connector_name(mem, cp, cl)
        out = run(name, _guest_request(mem, rp, rl))
    except Refused as exc:
        return refusal_block(mem, exc)
    return mem.alloc_result(out)


def wit_connector_call(connector: str, req: str, run: Run) -> dict[str, Any]:
    """The same for components: a WIT result of a string or a failure."""
    try:
        _too_large(len(req))
        out = run(connector, _parsed(req))
    except Refused as exc:
        return wit_failure(exc)
    return {"ok": out.decode()}


class CallTx:
    """The transactions one call opened: rolled back at the call's end unless committed."""

    __slots__ = ("open", "plugin")

    def __init__(self, plugin: str) -> None:
        self.plugin = plugin
        self.open: dict[int, tuple[Any, Any]] = {}

    def __call__(self) -> None:
        txs, self.open = self.open, {}
        for backend, conn in txs.values():
            backend.end(self.plugin, conn, False, 0.0)


def _ends(mem: GuestMemory) -> dict[str, Callable[[], None]]:
    """The running call's end-of-call work of the calling instance (made on first need)."""
    inst: Any = mem.instance  # a RawInstance (sql is not linked into Extism plugins)
    ends = inst.call_ends
    if ends is None:
        ends = inst.call_ends = {}
    return ends  # type: ignore[no-any-return]


def _scope(ends: dict[str, Callable[[], None]] | None, plugin: str, create: bool
           ) -> CallTx | None:
    """The call's transactions (``ends["sql"]``), made on first need when ``create``."""
    scope = ends.get("sql") if ends else None
    if scope is None and create and ends is not None:
        scope = ends["sql"] = CallTx(plugin)
    return scope  # type: ignore[return-value]


def _run(query: bool, bound: Bound, name: str, req: dict[str, Any], deadline: float,
         ends: dict[str, Callable[[], None]] | None) -> bytes:
    """One statement (in a transaction of the call when the request names one)."""
    backend = bound.backend(name)
    sql, args = backend.request(req)
    conn = None
    tx = req.get("tx")
    if tx is not None:
        scope = _scope(ends, bound.plugin, False)
        found = scope.open.get(tx) if scope is not None and type(tx) is int else None
        if found is None:
            raise Refused("INVALID", f"tx {str(tx)[:20]} is not a transaction of this call")
        if found[0] is not backend:
            raise Refused("INVALID", f"tx {tx} belongs to another connector")
        conn = found[1]
    if telemetry.ON:  # by kind and connector: never the statement's text or its values
        with telemetry.db_operation(backend.connector.kind, name, sql):
            traced: bytes = backend.run(bound.plugin, query, sql, args, deadline, conn)
            return traced
    out: bytes = backend.run(bound.plugin, query, sql, args, deadline, conn)
    return out


def _open(bound: Bound, name: str, deadline: float,
          ends: dict[str, Callable[[], None]]) -> int:
    """A new transaction of the call on connector ``name``: its handle."""
    backend = bound.backend(name)
    scope = _scope(ends, bound.plugin, True)
    assert scope is not None
    limit = backend.connector.max_transactions
    if len(scope.open) >= limit:
        raise Refused("QUOTA", f"this call has {limit} open transactions "
                               f"(connector {backend.name}, max_transactions)")
    conn = backend.begin(bound.plugin, deadline)
    with _handles_lock:
        handle = next(_handles)
    scope.open[handle] = (backend, conn)
    return handle


def _close(commit: bool, bound: Bound, tx: int, deadline: float,
           ends: dict[str, Callable[[], None]] | None) -> None:
    """Commit or roll back transaction ``tx`` of the call; Refused NOT_FOUND or UNAVAILABLE."""
    scope = _scope(ends, bound.plugin, False)
    found = scope.open.pop(tx, None) if scope is not None else None
    if found is None:
        raise Refused("NOT_FOUND", f"tx {tx} is not an open transaction of this call")
    backend, conn = found
    backend.end(bound.plugin, conn, commit, deadline)


def _statement(query: bool, bound: Bound, mem: GuestMemory, cp: int, cl: int, rp: int,
               rl: int) -> int:
    # connector_call written out: every call and object between the plugin's call and the
    # connector costs a one-row query twice what it costs alone, since the server's turn on
    # the CPU in between leaves the caches cold (bench/bench_connectors.py). The guest's
    # memory is read through mem.read, its one door, and the statement through _run.
    try:
        name = connector_name(mem, cp, cl)
        # _guest_request written out
        if rl > MAX_REQUEST:
            mem.check(rp, rl, "request")
            _too_large(rl)
        req = _parsed(mem.read(rp, rl, "request"))
        inst: Any = mem.instance
        out = _run(query, bound, name, req, inst.deadline, inst.call_ends)
    except Refused as exc:
        return refusal_block(mem, exc)
    return mem.alloc_result(out)


# partial objects rather than two-line functions: one Python frame less per statement.
_query = partial(_statement, True)
_execute = partial(_statement, False)


def _begin(bound: Bound, mem: GuestMemory, cp: int, cl: int) -> int:
    try:
        return _open(bound, connector_name(mem, cp, cl), mem.deadline, _ends(mem))
    except Refused as exc:
        return _CODES.get(exc.status, Status.UNAVAILABLE)


def _end(commit: bool, bound: Bound, mem: GuestMemory, tx: int) -> int:
    inst: Any = mem.instance
    try:
        _close(commit, bound, tx, mem.deadline, inst.call_ends)
    except Refused as exc:
        return _CODES.get(exc.status, Status.UNAVAILABLE)
    return 0


def _commit(bound: Bound, mem: GuestMemory, tx: int) -> int:
    return _end(True, bound, mem, tx)


def _rollback(bound: Bound, mem: GuestMemory, tx: int) -> int:
    return _end(False, bound, mem, tx)


# omnicore:plugin/sql (sdk/wit/plugin.wit): the same for components, whose calls end in
# sandbox.component's leave() (their transactions rolled back there).
_FAILURE = WitFunction.FAILURE
_STATEMENT = f"func(connector: string, request: string) -> result<string, {_FAILURE}>"
_BEGIN = f"func(connector: string) -> result<u64, {_FAILURE}>"
_END = f"func(tx: u64) -> result<_, {_FAILURE}>"


def _component_ends() -> dict[str, Callable[[], None]]:
    from omnicore.sandbox.component.hostcalls import call_ends

    return call_ends()


def _wit(query: bool) -> Callable[..., dict[str, Any]]:
    def call(bound: Bound, deadline: float, connector: str, req: str) -> dict[str, Any]:
        return wit_connector_call(connector, req, lambda name, parsed: _run(
            query, bound, name, parsed, deadline, _component_ends()))

    return call


def _wit_begin(bound: Bound, deadline: float, connector: str) -> dict[str, Any]:
    try:
        return {"ok": _open(bound, connector, deadline, _component_ends())}
    except Refused as exc:
        return wit_failure(exc)


def _wit_end(commit: bool) -> Callable[..., dict[str, Any]]:
    def end(bound: Bound, deadline: float, tx: int) -> dict[str, Any]:
        try:
            _close(commit, bound, tx, deadline, _component_ends())
        except Refused as exc:
            return wit_failure(exc)
        return {"ok": None}

    return end


def capability(databases: Databases | None = None) -> Capability:
    """The ``sql`` capability over ``databases`` (none: an app without database
    connectors, so every grant naming one is refused)."""
    return Capability(
        name="sql",
        description="parameterized statements on the app's PostgreSQL and MySQL connectors",
        functions=(
            HostFunction("query", ("ptr", "len", "ptr", "len"), ("i64",), _query),
            HostFunction("execute", ("ptr", "len", "ptr", "len"), ("i64",), _execute),
            HostFunction("begin", ("ptr", "len"), ("i64",), _begin),
            HostFunction("commit", ("i64",), ("i32",), _commit),
            HostFunction("rollback", ("i64",), ("i32",), _rollback),
        ),
        wit=(WitFunction("query", _STATEMENT, _wit(True), timed=True),
             WitFunction("execute", _STATEMENT, _wit(False), timed=True),
             WitFunction("begin", _BEGIN, _wit_begin, timed=True),
             WitFunction("commit", _END, _wit_end(True), timed=True),
             WitFunction("rollback", _END, _wit_end(False), timed=True)),
        bind=binder(databases, KINDS, "sql"),
        check_grant=check_connectors_grant("sql"),
    )


#: For plugin hosts without an app: no connectors, so the grant cannot be served.
CAPABILITY = capability()


def for_app(app: AppServices) -> Capability:
    """The sql capability over ``app.databases``."""
    return capability(app.databases)
