"""The host's own ``wasi:http/types`` and the WASI a serving component needs beside it
(issue 65, deliverable 1; specs/http-routes.md "Proxy components").

wasmtime-py's C API cannot make a ``wasi:http`` incoming request or a response outparam, so
the host defines ``wasi:http/types`` itself, as host resources, and with it every interface
whose resources those types meet: ``wasi:io/{error,poll,streams}``, and the parts of
``wasi:cli``, ``wasi:clocks``, ``wasi:random``, ``wasi:filesystem`` and ``wasi:sockets`` a
toolchain imports. wasmtime's own WASI resources are other types, so a serving instance is
linked to these definitions only (all or nothing):

* no file system (``get-directories`` is empty) and no sockets (every function traps: no
  socket can be made, since ``instance-network`` traps);
* stdin is empty; stdout and stderr go to the plugin's log; no environment, no arguments;
* ``wasi:http/outgoing-handler#handle`` sends through the plugin's ``http`` grant
  (:data:`Send`; without one it answers ``HTTP-request-denied``);
* the request body is read as the guest reads it (bodyfeed.py's ``BodyFeed``); a response body has
  one capped buffer (:class:`Capped`), its trailers kept for the server to send.

State lives per instance (:class:`Table`): wasmtime runs no host destructor when a store is
dropped, so nothing of an instance's handles outlives it. A host function reaches its
instance's table through the thread that runs the call (:func:`current`): an instance runs
on one thread at a time.

Traps kept: every borrowed handle a host function is given is dropped before it returns
(:meth:`Table.borrow`), else the guest's later drop of the resource traps.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from wasmtime import component as cm
from wasmtime.component import ResourceAny, ResourceHost, ResourceType, Variant

from omnicore.httpfields import is_name, is_value
from omnicore.routes.bodyfeed import BodyFeed
from omnicore.sandbox._wasmtime import add_typed_func, fast_byte_lists

__all__ = ["Exchange", "Fields", "Table", "current", "link_proxy"]

#: A resource type id per resource the host defines (ResourceType.host's integer).
_KINDS = (
    "io-error", "pollable", "input-stream", "output-stream",
    "fields", "incoming-request", "outgoing-request", "request-options", "response-outparam",
    "incoming-response", "incoming-body", "future-trailers", "outgoing-response",
    "outgoing-body", "future-incoming-response",
    "terminal-input", "terminal-output", "descriptor", "directory-entry-stream",
    "network", "tcp-socket", "udp-socket", "incoming-datagram-stream",
    "outgoing-datagram-stream", "resolve-address-stream",
)
_TYPE_ID = {name: 0x6F6D6E00 + i for i, name in enumerate(_KINDS)}

#: The most one read gives and one write takes (``check-write``'s answer).
CHUNK = 64 * 1024

_local = threading.local()
_log = logging.getLogger("omnicore.routes")


def current() -> Table:
    """The table of the instance running on this thread."""
    table: Table | None = getattr(_local, "table", None)
    if table is None:
        raise RuntimeError("a wasi:http host function was called outside a serving call")
    return table


class _Trap(Exception):
    """A host function's refusal: the guest traps with this message."""


# -- the objects behind the handles ----------------------------------------------------


@dataclass
class Fields:
    """Headers or trailers: (name, value) in order, names compared case-insensitively."""

    entries: list[tuple[str, bytes]] = field(default_factory=list)
    immutable: bool = False

    def get(self, name: str) -> list[bytes]:
        low = name.lower()
        return [v for k, v in self.entries if k.lower() == low]

    def delete(self, name: str) -> None:
        low = name.lower()
        self.entries = [(k, v) for k, v in self.entries if k.lower() != low]


@dataclass
class Capped:
    """A response body's bytes as the guest writes them, within ``cap`` (the one buffer:
    made with the response, the exchange's once the response is set)."""

    cap: int
    chunks: list[bytes] = field(default_factory=list)
    size: int = 0
    over: bool = False
    finished: bool = False
    trailers: Fields | None = None
    #: The exchange the response was set on (its ``notify`` is called after each chunk).
    exchange: Exchange | None = None

    def write(self, data: bytes) -> bool:
        """Take ``data``; False past the cap (the stream is closed, what was kept dropped) or
        once the body is finished (nothing is written after the end the guest declared)."""
        if self.over or self.finished:
            return False
        self.size += len(data)
        if self.size > self.cap:
            self.over = True
            self.chunks.clear()
            return False
        self.chunks.append(bytes(data))
        ex = self.exchange
        if ex is not None and ex.notify is not None:
            ex.notify()
        return True


@dataclass
class Exchange:
    """One request and what the guest answered: the response (set once through the
    outparam), its body's bytes (within ``cap``), whether the body was finished and its
    trailers. ``body`` is the request's body: its bytes, or a :class:`BodyFeed` the guest's
    reads pull from the server."""

    method: str
    path_with_query: str
    scheme: str
    authority: str
    headers: list[tuple[str, bytes]]
    body: bytes | BodyFeed
    cap: int
    status: int | None = None
    response_headers: Fields | None = None
    #: The guest set the outparam to an error (its error-code's case).
    error: str | None = None
    #: The response's body (set with the response).
    sink: Capped | None = None
    #: Called on the guest's thread when the response is set and after each body chunk (the
    #: server streams the body to the client as it comes).
    notify: Callable[[], object] | None = None
    #: The route's deadline (``time.monotonic()``): a call still queued for a thread then
    #: is never started (its client has had its 504; its guest would hold a thread of the
    #: proxies' shared pool for nothing, up to the plugin's own deadline).
    deadline: float = float("inf")
    #: The request's trailer fields once its body has ended (the server's, through the
    #: route's rules), or None: the server hands none on.
    trailers_in: Callable[[], list[tuple[str, bytes]]] | None = None

    @property
    def answered(self) -> bool:
        return self.status is not None or self.error is not None

    @property
    def chunks(self) -> list[bytes]:
        return self.sink.chunks if self.sink is not None else []

    @property
    def over(self) -> bool:
        return self.sink is not None and self.sink.over

    @property
    def finished(self) -> bool:
        return self.sink is not None and self.sink.finished

    @property
    def trailers(self) -> Fields | None:
        return self.sink.trailers if self.sink is not None else None


@dataclass
class _Request:
    exchange: Exchange
    consumed: bool = False


@dataclass
class _Outparam:
    exchange: Exchange
    used: bool = False


@dataclass
class _IncomingBody:
    data: bytes | BodyFeed
    streamed: bool = False
    #: Its trailers, once the body has ended (Exchange.trailers_in), or None: none.
    trailers: Callable[[], list[tuple[str, bytes]]] | None = None


@dataclass
class _InputStream:
    data: bytes
    pos: int = 0
    #: The request body as it arrives (``data`` unused), or None.
    feed: BodyFeed | None = None
    #: The feed's failure was given to the guest: the stream is closed from now on.
    failed: bool = False


@dataclass
class _FutureTrailers:
    #: The request body's feed (the trailers are ready at its end), or None: ready now.
    feed: BodyFeed | None = None
    #: The trailer fields once they are ready (None: the request has none).
    trailers: Callable[[], list[tuple[str, bytes]]] | None = None
    taken: bool = False


@dataclass
class _OutputStream:
    """A sink: ``write`` takes bytes, False when the stream is closed."""

    write: Callable[[bytes], bool]
    #: A body's stream: what it takes the host holds (counted: :meth:`Table.charge_body`).
    held: bool = False


@dataclass
class _OutgoingResponse:
    headers: Fields
    #: Its body's bytes (written through ``body()``), the exchange's once it is set.
    sink: Capped
    status: int = 200
    body_taken: bool = False
    exchange: Exchange | None = None


@dataclass
class _OutgoingBody:
    response: _OutgoingResponse
    stream_taken: bool = False

    def write(self, data: bytes) -> bool:
        return self.response.sink.write(data)


@dataclass
class _OutgoingRequest:
    """A request the guest builds (and may pass to outgoing-handler, which refuses it)."""

    headers: Fields
    method: Any = None
    path_with_query: str | None = None
    scheme: Any = None
    authority: str | None = None
    body: _RequestBody | None = None


@dataclass
class _Pollable:
    #: time.monotonic_ns() when ready (None: ready now).
    at: int | None = None
    #: Ready when this request body has bytes, its end or its failure (``at`` unused).
    feed: BodyFeed | None = None
    #: ... or, with ``end``, only at the body's end (the trailers' pollable).
    end: bool = False

    def ready(self) -> bool:
        if self.feed is not None:
            return self.feed.readable(end=self.end)
        return self.at is None or time.monotonic_ns() >= self.at


@dataclass
class _Error:
    message: str


class _OutgoingDenied(Exception):
    """An outgoing request :data:`Send` did not send or that failed: ``case`` is the
    ``error-code`` case the guest gets (``HTTP-request-denied``, ...)."""

    def __init__(self, case: str, message: str) -> None:
        super().__init__(message)
        self.case = case


#: ``send(method, url, headers, body, deadline) -> (status, headers, body)``; raises
#: _OutgoingDenied.
Send = Callable[[str, str, list[tuple[str, bytes]], bytes, float],
                tuple[int, list[tuple[str, bytes]], bytes]]

#: The most an outgoing request's body may hold here (the grant's max_request_bytes then).
MAX_OUTGOING_BODY = 16 << 20


@dataclass
class _RequestBody:
    data: list[bytes] = field(default_factory=list)
    size: int = 0
    stream_taken: bool = False
    finished: bool = False

    def write(self, chunk: bytes) -> bool:
        self.size += len(chunk)
        if self.size > MAX_OUTGOING_BODY:
            return False
        self.data.append(bytes(chunk))
        return True


@dataclass
class _IncomingResponse:
    status: int
    headers: list[tuple[str, bytes]]
    body: bytes
    consumed: bool = False


@dataclass
class _FutureResponse:
    #: The response, or the error-code's Variant; None once taken.
    result: Any
    taken: bool = False


#: Handles one instance may hold at once, and header bytes (names, values, 64 a field) its
#: guest may make in one request: each is host memory a guest could otherwise ask for in a
#: loop until its deadline (a trap past either).
MAX_HANDLES = 4096
MAX_FIELD_BYTES = 1 << 20
#: Body bytes (responses' and outgoing requests') one request may make the host hold beyond
#: the route's max_response_bytes: each outgoing-response has a buffer of its own, so a
#: guest filling many it never sets held the cap times the handles (a trap past it).
MAX_BODY_BYTES = MAX_OUTGOING_BODY


class Table:
    """One instance's handles: rep -> object, and what a call of it may reach."""

    def __init__(self, cap: int, log: Callable[[str, str], object]) -> None:
        self.objects: dict[int, Any] = {}
        self.next = 1
        #: Header bytes the guest made in this request (:func:`charge_fields`).
        self.field_bytes = 0
        #: Body bytes the guest wrote in this request (:meth:`charge_body`).
        self.body_bytes = 0
        #: The response body's cap for a response made before it is set (the route's).
        self.cap = cap
        self.log = log
        #: The deadline of the running call (time.monotonic()): a pollable's block ends there.
        self.deadline = float("inf")
        #: Sends an outgoing request (the plugin's ``http`` grant), None: every one refused.
        self.send: Send | None = None
        #: Handles of past requests the guest still holds (their objects forgotten at the
        #: request's end, wasmtime's table keeping them until the guest drops them):
        #: :meth:`forget` counts them, the guest's drop takes them off.
        self.orphans: set[int] = set()

    def own(self, kind: str, obj: Any) -> ResourceHost:
        if len(self.objects) >= MAX_HANDLES:
            raise _Trap(f"over {MAX_HANDLES} wasi:http handles held at once")
        if isinstance(obj, Fields):
            self.charge(obj.entries)
        rep = self.next
        self.next += 1
        self.objects[rep] = obj
        return ResourceHost.own(rep, _TYPE_ID[kind])

    def charge(self, entries: Any) -> None:
        """Count header ``entries`` the guest made against :data:`MAX_FIELD_BYTES`."""
        self.field_bytes += sum(len(k) + len(v) + 64 for k, v in entries)
        if self.field_bytes > MAX_FIELD_BYTES:
            raise _Trap(f"over {MAX_FIELD_BYTES} bytes of headers made in one request")

    def charge_body(self, n: int) -> None:
        """Count ``n`` body bytes the host now holds against the route's cap plus
        :data:`MAX_BODY_BYTES` (per request)."""
        self.body_bytes += n
        if self.body_bytes > self.cap + MAX_BODY_BYTES:
            raise _Trap(f"over {self.cap + MAX_BODY_BYTES} bytes of bodies written in one "
                        "request")

    def _rep(self, store: Any, res: ResourceAny) -> int:
        try:
            host = res.to_host(store)
        finally:
            res.close()
        try:
            return int(host.rep)
        finally:
            host.close()

    def borrow(self, store: Any, res: ResourceAny) -> Any:
        """The object of a borrowed (or ``self``) handle. Taking its rep ends the borrow
        (wasmtime's conversion to a host resource releases it; a host function must not
        return holding one)."""
        rep = self._rep(store, res)
        try:
            return self.objects[rep]
        except KeyError:
            raise _Trap("a handle the host does not know") from None

    def take(self, store: Any, res: ResourceAny) -> Any:
        """The object of an owned handle the guest gave up (its entry removed: the
        conversion takes it out of the store's table, and no destructor runs for it)."""
        obj = self.objects.pop(self._rep(store, res), None)
        if obj is None:
            raise _Trap("a handle the host does not know")
        return obj

    def drop(self, rep: int) -> None:
        self.objects.pop(rep, None)
        self.orphans.discard(rep)

    def forget(self, mark: int) -> bool:
        """Forget the objects of handles made since ``mark`` (a request's end: nothing of one
        request reaches the next); whether the instance may serve on: not once the guest
        holds over :data:`MAX_HANDLES` handles of past requests (each is an entry of the
        store's table for as long as the instance lives)."""
        for rep in [r for r in self.objects if r >= mark]:
            del self.objects[rep]
            self.orphans.add(rep)
        return len(self.orphans) <= MAX_HANDLES



# -- the definitions -------------------------------------------------------------------

_OK = Variant("ok")
_CLOSED = None  # stream-error.closed (the value API maps a payload-less case to None)


def _ok(payload: Any = None) -> Variant:
    return Variant("ok", payload)


def _err(payload: Any = None) -> Variant:
    return Variant("err", payload)


_METHODS = {"GET": "get", "HEAD": "head", "POST": "post", "PUT": "put", "DELETE": "delete",
            "CONNECT": "connect", "OPTIONS": "options", "TRACE": "trace", "PATCH": "patch"}


def _method(name: str) -> Variant:
    case = _METHODS.get(name)
    return Variant(case) if case else Variant("other", name)


def _scheme(name: str) -> Variant:
    return Variant({"http": "HTTP", "https": "HTTPS"}.get(name, "other"),
                   None if name in ("http", "https") else name)


def _dtor(kind: str) -> Callable[[Any, int], None]:
    def dtor(_store: Any, rep: int) -> None:
        table = getattr(_local, "table", None)
        if table is not None:
            table.drop(rep)
    return dtor


class _Definer:
    """Adds functions and resources to the linker under the names the component imports."""

    def __init__(self, linker: cm.Linker, imports: dict[str, str]) -> None:
        self.linker = linker
        #: interface without version -> the name the component imports it under
        self.imports = imports

    def interface(self, name: str, resources: tuple[str, ...],
                  funcs: dict[str, Callable[..., Any]]) -> None:
        full = self.imports.get(name)
        if full is None:
            return
        with self.linker.root() as root, root.add_instance(full) as inst:
            for res in resources:
                inst.add_resource(res, ResourceType.host(_TYPE_ID[res]), _dtor(res))
            for fname, fn in funcs.items():
                _add_func(inst, fname, _guarded(fn))


def _guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(store: Any, *args: Any) -> Any:
        return fn(current(), store, *args)
    return call


def _add_func(inst: cm.LinkerInstance, name: str, fn: Callable[..., Any]) -> None:
    # Its type read once (the door's add_typed_func): wasmtime-py's add_func read it and
    # every variant's cases again on each call, ~85 % of a request's CPU.
    add_typed_func(inst, name, fn, traps=(_Trap,))


def _io(d: _Definer) -> None:
    full = d.imports.get("wasi:io/error")
    if full is not None:
        with d.linker.root() as root, root.add_instance(full) as inst:
            inst.add_resource("error", ResourceType.host(_TYPE_ID["io-error"]),
                              _dtor("io-error"))
            _add_func(inst, "[method]error.to-debug-string",
                          _guarded(lambda t, s, e: t.borrow(s, e).message))

    def ready(t: Table, s: Any, p: ResourceAny) -> bool:
        obj: _Pollable = t.borrow(s, p)
        return obj.ready()

    def block(t: Table, s: Any, p: ResourceAny) -> None:
        _block(t, [t.borrow(s, p)])

    def poll(t: Table, s: Any, ps: list[ResourceAny]) -> list[int]:
        objs: list[_Pollable] = [t.borrow(s, p) for p in ps]
        if not objs:
            raise _Trap("poll of no pollables")
        _block(t, objs)
        return [i for i, o in enumerate(objs) if o.ready()]

    full = d.imports.get("wasi:io/poll")
    if full is not None:
        with d.linker.root() as root, root.add_instance(full) as inst:
            inst.add_resource("pollable", ResourceType.host(_TYPE_ID["pollable"]),
                              _dtor("pollable"))
            _add_func(inst, "[method]pollable.ready", _guarded(ready))
            _add_func(inst, "[method]pollable.block", _guarded(block))
            _add_func(inst, "poll", _guarded(poll))

    def take(t: Table, obj: _InputStream, n: int, blocking: bool) -> Any:
        """Up to ``n`` bytes of ``obj`` (at most CHUNK); None at its end (closed); an
        io-error's handle when its body failed (last-operation-failed)."""
        n = min(n, CHUNK)
        feed = obj.feed
        if feed is None:
            if obj.pos >= len(obj.data):
                return _CLOSED
            out = obj.data[obj.pos:obj.pos + n]
            obj.pos += len(out)
            return out
        if obj.failed:
            return _CLOSED
        try:
            got = feed.take(n, t.deadline if blocking else None)
        except TimeoutError:
            raise _Trap("the call's deadline passed while it waited for the request "
                        "body") from None
        if isinstance(got, tuple):  # the body failed: said once, then closed
            obj.failed = True
            return t.own("io-error", _Error(got[1]))
        return got

    def read(t: Table, s: Any, st: ResourceAny, n: int) -> Any:
        return take(t, t.borrow(s, st), n, False)

    def blocking_read(t: Table, s: Any, st: ResourceAny, n: int) -> Any:
        return take(t, t.borrow(s, st), n, True)

    def skipping(blocking: bool) -> Callable[..., Any]:
        def skip(t: Table, s: Any, st: ResourceAny, n: int) -> Any:
            got = take(t, t.borrow(s, st), n, blocking)
            return len(got) if isinstance(got, bytes) else got
        return skip

    def subscribe(t: Table, s: Any, st: ResourceAny) -> ResourceHost:
        obj = t.borrow(s, st)
        return t.own("pollable", _Pollable(feed=getattr(obj, "feed", None)))

    def check_write(t: Table, s: Any, st: ResourceAny) -> Any:
        t.borrow(s, st)
        return CHUNK

    def put(t: Table, obj: _OutputStream, data: bytes) -> bool:
        if not obj.write(data):
            return False
        if obj.held:
            t.charge_body(len(data))
        return True

    def write(t: Table, s: Any, st: ResourceAny, data: bytes) -> Any:
        obj: _OutputStream = t.borrow(s, st)
        return _OK if put(t, obj, data) else _err(_CLOSED)

    def flush(t: Table, s: Any, st: ResourceAny) -> Any:
        t.borrow(s, st)
        return _OK

    def zeroes(t: Table, s: Any, st: ResourceAny, n: int) -> Any:
        obj: _OutputStream = t.borrow(s, st)
        return _OK if put(t, obj, bytes(min(n, CHUNK))) else _err(_CLOSED)

    def splicing(blocking: bool) -> Callable[..., Any]:
        def splice(t: Table, s: Any, st: ResourceAny, src: ResourceAny, n: int) -> Any:
            out: _OutputStream = t.borrow(s, st)
            got = take(t, t.borrow(s, src), n, blocking)
            if not isinstance(got, bytes):
                return got
            return len(got) if put(t, out, got) else _CLOSED
        return splice

    d.interface("wasi:io/streams", ("input-stream", "output-stream"), {
        "[method]input-stream.read": read,
        "[method]input-stream.blocking-read": blocking_read,
        "[method]input-stream.skip": skipping(False),
        "[method]input-stream.blocking-skip": skipping(True),
        "[method]input-stream.subscribe": subscribe,
        "[method]output-stream.check-write": check_write,
        "[method]output-stream.write": write,
        "[method]output-stream.blocking-write-and-flush": write,
        "[method]output-stream.flush": flush,
        "[method]output-stream.blocking-flush": flush,
        "[method]output-stream.subscribe": subscribe,
        "[method]output-stream.write-zeroes": zeroes,
        "[method]output-stream.blocking-write-zeroes-and-flush": zeroes,
        "[method]output-stream.splice": splicing(False),
        "[method]output-stream.blocking-splice": splicing(True),
    })


def _block(t: Table, objs: list[_Pollable]) -> None:
    """Block until one of ``objs`` is ready, never past the call's deadline (then trap: the
    guest is out of time). A request body's pollable waits on its feed's news, a clock's
    sleeps."""
    feed = next((o.feed for o in objs if o.feed is not None), None)
    while True:
        if feed is not None:
            with feed._cond:  # (readable() takes it again: an RLock)
                if any(o.ready() for o in objs):
                    return
                clocks = [o.at / 1e9 for o in objs if o.feed is None and o.at is not None]
                until = min([t.deadline, *clocks])
                if not feed.wait(until) and until >= t.deadline:
                    feed.starve()
                    raise _Trap("the call's deadline passed while it waited for the request "
                                "body")
            continue
        if any(o.ready() for o in objs):
            return
        soonest = min(o.at for o in objs if o.at is not None) / 1e9
        room = t.deadline - time.monotonic()
        if soonest - time.monotonic() > room:
            time.sleep(max(0.0, room))
            raise _Trap("the call's deadline passed while it waited on a pollable")
        time.sleep(max(0.0, soonest - time.monotonic()))


def _wasi(d: _Definer, stdout: Callable[[bytes], bool], stderr: Callable[[bytes], bool]) -> None:
    d.interface("wasi:clocks/monotonic-clock", (), {
        "now": lambda t, s: time.monotonic_ns(),
        "resolution": lambda t, s: 1,
        "subscribe-instant": lambda t, s, when: t.own("pollable", _Pollable(when)),
        "subscribe-duration": lambda t, s, ns: t.own(
            "pollable", _Pollable(time.monotonic_ns() + ns)),
    })

    class _DateTime:
        def __init__(self, ns: int) -> None:
            self.seconds, self.nanoseconds = divmod(ns, 1_000_000_000)

    d.interface("wasi:clocks/wall-clock", (), {
        "now": lambda t, s: _DateTime(time.time_ns()),
        "resolution": lambda t, s: _DateTime(1),
    })
    d.interface("wasi:random/random", (), {
        "get-random-bytes": lambda t, s, n: os.urandom(min(n, 1 << 20)),
        "get-random-u64": lambda t, s: int.from_bytes(os.urandom(8), "little"),
    })
    d.interface("wasi:random/insecure", (), {
        "get-insecure-random-bytes": lambda t, s, n: os.urandom(min(n, 1 << 20)),
        "get-insecure-random-u64": lambda t, s: int.from_bytes(os.urandom(8), "little"),
    })
    d.interface("wasi:random/insecure-seed", (), {
        "insecure-seed": lambda t, s: (int.from_bytes(os.urandom(8), "little"),
                                       int.from_bytes(os.urandom(8), "little")),
    })
    d.interface("wasi:cli/environment", (), {
        "get-environment": lambda t, s: [],
        "get-arguments": lambda t, s: [],
        "initial-cwd": lambda t, s: None,
    })

    def exit_(t: Table, s: Any, status: Any) -> None:
        raise _Trap(f"the component exited ({status})")

    d.interface("wasi:cli/exit", (), {"exit": exit_})
    d.interface("wasi:cli/stdin", (), {
        "get-stdin": lambda t, s: t.own("input-stream", _InputStream(b"")),
    })
    d.interface("wasi:cli/stdout", (), {
        "get-stdout": lambda t, s: t.own("output-stream", _OutputStream(stdout)),
    })
    d.interface("wasi:cli/stderr", (), {
        "get-stderr": lambda t, s: t.own("output-stream", _OutputStream(stderr)),
    })
    d.interface("wasi:cli/terminal-input", ("terminal-input",), {})
    d.interface("wasi:cli/terminal-output", ("terminal-output",), {})
    for which in ("stdin", "stdout", "stderr"):
        d.interface(f"wasi:cli/terminal-{which}", (), {
            f"get-terminal-{which}": lambda t, s: None,
        })
    # No file system: no preopens, so no descriptor is ever made (its methods trap).
    d.interface("wasi:filesystem/types", ("descriptor", "directory-entry-stream"), {
        "filesystem-error-code": lambda t, s, e: (t.borrow(s, e), None)[1],
    })
    d.interface("wasi:filesystem/preopens", (), {"get-directories": lambda t, s: []})
    # No sockets: no network is handed out (instance-network traps), so none can be made.
    d.interface("wasi:sockets/network", ("network",), {})
    d.interface("wasi:sockets/tcp", ("tcp-socket",), {})
    d.interface("wasi:sockets/udp", ("udp-socket", "incoming-datagram-stream",
                                     "outgoing-datagram-stream"), {})
    d.interface("wasi:sockets/ip-name-lookup", ("resolve-address-stream",), {})


def _http(d: _Definer) -> None:
    def fields_new(t: Table, s: Any) -> ResourceHost:
        return t.own("fields", Fields())

    def from_list(t: Table, s: Any, entries: list[tuple[str, bytes]]) -> Any:
        for name, value in entries:
            if not is_name(name) or not is_value(value):
                return Variant("invalid-syntax")
        return t.own("fields", Fields(list(entries)))

    def get(t: Table, s: Any, f: ResourceAny, name: str) -> list[bytes]:
        return t.borrow(s, f).get(name)  # type: ignore[no-any-return]

    def has(t: Table, s: Any, f: ResourceAny, name: str) -> bool:
        return bool(t.borrow(s, f).get(name))

    def mutate(t: Table, fields: Fields, name: str, values: list[bytes] | None) -> Any:
        if fields.immutable:
            return Variant("immutable")
        if not is_name(name) or not all(is_value(v) for v in values or ()):
            return Variant("invalid-syntax")
        t.charge((name, v) for v in values or ())
        fields.delete(name)
        fields.entries.extend((name, v) for v in values or ())
        return None

    def set_(t: Table, s: Any, f: ResourceAny, name: str, values: list[bytes]) -> Any:
        return mutate(t, t.borrow(s, f), name, values)

    def delete(t: Table, s: Any, f: ResourceAny, name: str) -> Any:
        return mutate(t, t.borrow(s, f), name, None)

    def append(t: Table, s: Any, f: ResourceAny, name: str, value: bytes) -> Any:
        fields: Fields = t.borrow(s, f)
        if fields.immutable:
            return Variant("immutable")
        if not is_name(name) or not is_value(value):
            return Variant("invalid-syntax")
        t.charge(((name, value),))
        fields.entries.append((name, value))
        return None

    def entries(t: Table, s: Any, f: ResourceAny) -> list[tuple[str, bytes]]:
        return list(t.borrow(s, f).entries)

    def clone(t: Table, s: Any, f: ResourceAny) -> ResourceHost:
        return t.own("fields", Fields(list(t.borrow(s, f).entries)))

    def incoming_headers(t: Table, headers: list[tuple[str, bytes]]) -> ResourceHost:
        """An incoming request's or response's headers: a copy the guest cannot change."""
        return t.own("fields", Fields(list(headers), immutable=True))

    def incoming_body(t: Table, obj: _Request | _IncomingResponse,
                      body: bytes | BodyFeed) -> Any:
        """An incoming request's or response's body, taken once (None after that)."""
        if obj.consumed:
            return None
        obj.consumed = True
        trailers = obj.exchange.trailers_in if isinstance(obj, _Request) else None
        return t.own("incoming-body", _IncomingBody(body, trailers=trailers))

    def req(t: Table, s: Any, r: ResourceAny) -> Exchange:
        obj: _Request = t.borrow(s, r)
        return obj.exchange

    def consume(t: Table, s: Any, r: ResourceAny) -> Any:
        obj: _Request = t.borrow(s, r)
        return incoming_body(t, obj, obj.exchange.body)

    def body_stream(t: Table, s: Any, b: ResourceAny) -> Any:
        obj: _IncomingBody = t.borrow(s, b)
        if obj.streamed:
            return None
        obj.streamed = True
        if isinstance(obj.data, BodyFeed):
            return t.own("input-stream", _InputStream(b"", feed=obj.data))
        return t.own("input-stream", _InputStream(obj.data))

    def body_finish(t: Table, s: Any, b: ResourceAny) -> ResourceHost:
        obj: _IncomingBody = t.take(s, b)
        feed = obj.data if isinstance(obj.data, BodyFeed) else None
        return t.own("future-trailers", _FutureTrailers(feed, obj.trailers))

    def trailers_subscribe(t: Table, s: Any, f: ResourceAny) -> ResourceHost:
        obj: _FutureTrailers = t.borrow(s, f)
        return t.own("pollable", _Pollable(feed=obj.feed, end=True))

    def trailers_get(t: Table, s: Any, f: ResourceAny) -> Any:
        obj: _FutureTrailers = t.borrow(s, f)
        if obj.feed is not None and not obj.feed.readable(end=True):
            return None  # not yet: the body has not ended
        if obj.taken:
            return _err(None)  # some(err): taken already
        obj.taken = True
        # A body that failed (its trailers past the route's header caps: 431, its reads
        # failed already) has none. (Its error-code cannot be lowered: wasmtime-py's value
        # API takes any value for the inner result's ok case, an option<trailers>.)
        failure = obj.feed.failure if obj.feed is not None else None
        fields = obj.trailers() if obj.trailers is not None and failure is None else []
        if not fields:
            return _ok(None)  # some(ok(ok(none))): no request trailers
        # some(ok(ok(some(trailers)))): immutable, as the types say
        return _ok(t.own("fields", Fields(fields, immutable=True)))

    def out_set(t: Table, s: Any, p: ResourceAny, response: Any) -> None:
        param: _Outparam = t.take(s, p)
        ex = param.exchange
        # result<outgoing-response, error-code> as the value API lifts it: the response's
        # handle, or the error-code's Variant.
        if isinstance(response, ResourceAny):
            resp: _OutgoingResponse = t.take(s, response)
            ex.status = resp.status
            ex.response_headers = resp.headers
            resp.exchange = ex
            # its body's buffer (what was written before this too) is the exchange's now
            ex.sink = resp.sink
            resp.sink.exchange = ex
            if ex.notify is not None:
                ex.notify()
        else:
            ex.error = getattr(response, "tag", None) or str(response)

    def resp_new(t: Table, s: Any, h: ResourceAny) -> ResourceHost:
        headers: Fields = t.take(s, h)
        return t.own("outgoing-response", _OutgoingResponse(headers, Capped(t.cap)))

    def resp_status(t: Table, s: Any, r: ResourceAny) -> int:
        return int(t.borrow(s, r).status)

    def resp_set_status(t: Table, s: Any, r: ResourceAny, code: int) -> Any:
        obj: _OutgoingResponse = t.borrow(s, r)
        if not 100 <= code <= 999:
            return _err(None)
        obj.status = code
        return _OK

    def resp_headers(t: Table, s: Any, r: ResourceAny) -> ResourceHost:
        obj: _OutgoingResponse = t.borrow(s, r)
        return t.own("fields", obj.headers)

    def resp_body(t: Table, s: Any, r: ResourceAny) -> Any:
        obj: _OutgoingResponse = t.borrow(s, r)
        if obj.body_taken:
            return None
        obj.body_taken = True
        return t.own("outgoing-body", _OutgoingBody(obj))

    def out_write(t: Table, s: Any, b: ResourceAny) -> Any:
        obj: _OutgoingBody | _RequestBody = t.borrow(s, b)
        if obj.stream_taken:
            return None
        obj.stream_taken = True
        return t.own("output-stream", _OutputStream(obj.write, held=True))

    def out_finish(t: Table, s: Any, b: ResourceAny, trailers: Any) -> Any:
        obj: _OutgoingBody | _RequestBody = t.take(s, b)
        tr = t.take(s, trailers) if trailers is not None else None
        if isinstance(obj, _RequestBody):
            obj.finished = True
            return None
        if tr is not None:  # (the host holds them now: immutable, as the types say)
            tr.immutable = True
        sink = obj.response.sink
        sink.trailers = tr
        sink.finished = True
        if sink.exchange is not None and sink.exchange.notify is not None:
            sink.exchange.notify()
        return None

    def http_error_code(t: Table, s: Any, e: ResourceAny) -> None:
        t.borrow(s, e)
        return None

    def denied(t: Table, s: Any, *args: Any) -> Any:
        request = None
        for a in args:  # the request (and its options) are the host's now
            if isinstance(a, ResourceAny):
                obj = t.take(s, a)
                if isinstance(obj, _OutgoingRequest):
                    request = obj
        if request is None:
            raise _Trap("outgoing-handler.handle without a request")
        scheme = request.scheme
        scheme_name = "https" if scheme is None else {
            "HTTP": "http", "HTTPS": "https"}.get(getattr(scheme, "tag", ""), str(
                getattr(scheme, "payload", "")))
        url = f"{scheme_name}://{request.authority or ''}{request.path_with_query or '/'}"
        method = request.method
        method_name = "GET" if method is None else (
            str(method.payload) if method.tag == "other" else method.tag.upper())
        if t.send is None:
            t.log("warn", f"an outgoing HTTP request ({method_name} {url}) was refused: the "
                          "plugin has no http grant")
            return Variant("HTTP-request-denied")
        body = b"".join(request.body.data) if request.body is not None else b""
        try:
            status, headers, data = t.send(method_name, url, list(request.headers.entries),
                                           body, t.deadline)
            result: Any = _IncomingResponse(status, headers, data)
        except _OutgoingDenied as exc:
            t.log("warn", f"an outgoing HTTP request ({method_name} {url}) was refused: {exc}")
            result = Variant(exc.case) if exc.case != "internal-error" else \
                Variant("internal-error", str(exc)[:200])
        return t.own("future-incoming-response", _FutureResponse(result))

    def future_get(t: Table, s: Any, f: ResourceAny) -> Any:
        fut: _FutureResponse = t.borrow(s, f)
        if fut.taken:
            return Variant("some", None)  # some(err): taken already
        fut.taken = True
        if isinstance(fut.result, _IncomingResponse):
            return Variant("some", t.own("incoming-response", fut.result))
        return Variant("some", fut.result)  # some(ok(err(error-code)))

    def iresp(t: Table, s: Any, r: ResourceAny) -> _IncomingResponse:
        obj: _IncomingResponse = t.borrow(s, r)
        return obj

    def iresp_consume(t: Table, s: Any, r: ResourceAny) -> Any:
        obj = iresp(t, s, r)
        return incoming_body(t, obj, obj.body)

    def oreq_body(t: Table, s: Any, r: ResourceAny) -> Any:
        obj = oreq(t, s, r)
        if obj.body is not None:
            return None
        obj.body = _RequestBody()
        return t.own("outgoing-body", obj.body)

    def oreq(t: Table, s: Any, r: ResourceAny) -> _OutgoingRequest:
        obj: _OutgoingRequest = t.borrow(s, r)
        return obj

    def oreq_set(attr: str) -> Callable[..., Any]:
        def set_attr(t: Table, s: Any, r: ResourceAny, value: Any) -> Variant:
            setattr(oreq(t, s, r), attr, value)
            return _OK
        return set_attr

    d.interface("wasi:http/types", (
        "fields", "incoming-request", "outgoing-request", "request-options",
        "response-outparam", "incoming-response", "incoming-body", "future-trailers",
        "outgoing-response", "outgoing-body", "future-incoming-response"), {
        "[constructor]fields": fields_new,
        "[static]fields.from-list": from_list,
        "[method]fields.get": get,
        "[method]fields.has": has,
        "[method]fields.set": set_,
        "[method]fields.delete": delete,
        "[method]fields.append": append,
        "[method]fields.entries": entries,
        "[method]fields.clone": clone,
        "[method]incoming-request.method": lambda t, s, r: _method(req(t, s, r).method),
        "[method]incoming-request.path-with-query":
            lambda t, s, r: req(t, s, r).path_with_query,
        "[method]incoming-request.scheme": lambda t, s, r: _scheme(req(t, s, r).scheme),
        "[method]incoming-request.authority": lambda t, s, r: req(t, s, r).authority,
        "[method]incoming-request.headers":
            lambda t, s, r: incoming_headers(t, req(t, s, r).headers),
        "[method]incoming-request.consume": consume,
        "[method]incoming-body.stream": body_stream,
        "[static]incoming-body.finish": body_finish,
        "[method]future-trailers.subscribe": trailers_subscribe,
        "[method]future-trailers.get": trailers_get,
        "[static]response-outparam.set": out_set,
        "[constructor]outgoing-response": resp_new,
        "[constructor]outgoing-request": lambda t, s, h: t.own(
            "outgoing-request", _OutgoingRequest(t.take(s, h))),
        "[method]outgoing-request.set-method": oreq_set("method"),
        "[method]outgoing-request.set-path-with-query": oreq_set("path_with_query"),
        "[method]outgoing-request.set-scheme": oreq_set("scheme"),
        "[method]outgoing-request.set-authority": oreq_set("authority"),
        "[method]outgoing-request.headers": lambda t, s, r: t.own(
            "fields", oreq(t, s, r).headers),
        "[constructor]request-options": lambda t, s: t.own("request-options", object()),
        "[method]outgoing-request.body": oreq_body,
        "[method]future-incoming-response.subscribe":
            lambda t, s, f: (t.borrow(s, f), t.own("pollable", _Pollable()))[1],
        "[method]future-incoming-response.get": future_get,
        "[method]incoming-response.status": lambda t, s, r: iresp(t, s, r).status,
        "[method]incoming-response.headers":
            lambda t, s, r: incoming_headers(t, iresp(t, s, r).headers),
        "[method]incoming-response.consume": iresp_consume,
        "[method]outgoing-response.status-code": resp_status,
        "[method]outgoing-response.set-status-code": resp_set_status,
        "[method]outgoing-response.headers": resp_headers,
        "[method]outgoing-response.body": resp_body,
        "[method]outgoing-body.write": out_write,
        "[static]outgoing-body.finish": out_finish,
        "http-error-code": http_error_code,
    })
    d.interface("wasi:http/outgoing-handler", (), {"handle": denied})


def interface_names(imports: tuple[str, ...] | list[str]) -> dict[str, str]:
    """interface without version -> its name as imported."""
    return {name.split("@", 1)[0]: name for name in imports}


def link_proxy(linker: cm.Linker, imports: tuple[str, ...] | list[str],
               stdout: Callable[[bytes], bool], stderr: Callable[[bytes], bool]) -> None:
    """Define in ``linker`` everything of ``imports`` (the component's imported interface
    names) the host serves a proxy component with."""
    fast_byte_lists()
    d = _Definer(linker, interface_names(imports))
    _io(d)
    _wasi(d, stdout, stderr)
    _http(d)


def new_request(table: Table, exchange: Exchange) -> tuple[ResourceHost, ResourceHost]:
    """The handles ``handle`` is called with: the request and its response outparam."""
    table.body_bytes = 0  # a budget per request (MAX_BODY_BYTES)
    return (table.own("incoming-request", _Request(exchange)),
            table.own("response-outparam", _Outparam(exchange)))


def enter(table: Table | None) -> None:
    """Make ``table`` the one this thread's host functions reach (None: none)."""
    _local.table = table

