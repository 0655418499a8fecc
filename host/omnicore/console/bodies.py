"""Request bodies: every one capped as it streams and given a deadline to arrive, and one
bounded reader each for raw bytes, JSON and forms.

:class:`BodyLimits` wraps the ASGI ``receive`` of every request, so no route and no parser
(Starlette's multipart parser spools file parts to disk with no limit of its own) can read
past the cap or wait on a client that trickles its body: a declared ``Content-Length`` over the
cap is refused before a byte is read; a body that grows past the cap fails the read with 413;
one that has not arrived by its deadline fails with 408. The cap starts at the largest body
any route takes; a route lowers it to its own (:func:`read_body` does) before reading.

A request answered before its body was read (refused, or too large) is answered with
``Connection: close``: the rest of its body is still on the way, so the connection cannot
carry another request (a client would see it dropped under its next one). And Hypercorn
would otherwise hang that request until the server stops: the response's last send waits to
queue a disconnect behind a full queue of body chunks nobody reads (some 640 KiB held per
request). :func:`_discard` empties that queue in the background, so the connection closes
and both go.

Routes authenticate before they read (``Auth.identify``), so nobody unknown gets a body read.

Every JSON body :func:`json_body` reads is held to the body its operation has in the OpenAPI
document (:mod:`omnicore.console.openapi`): a field the document does not name is refused
with 422, naming the field and the known ones (a typo such as ``input`` for ``payload`` must
not quietly become an empty value). One rule for every route, from the document clients read;
an object documented as open (``additionalProperties``) takes any key.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import contextvars
import re
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.routing import Mount
from starlette.types import Message, Receive, Scope, Send

from omnicore import telemetry
from omnicore.capabilities import guestjson
from omnicore.console import openapi
from omnicore.console.errors import ApiError, error_response
from omnicore.console.middleware import HttpMiddleware

__all__ = ["MAX_FORM_BYTES", "MAX_JSON_BYTES", "MIN_BODY_RATE", "BodyLimits", "form_body",
           "json_body", "limit_body", "parse_json", "read_body", "unknown_fields"]

MAX_JSON_BYTES = 1 << 20
#: A form is a few fields (a secret is at most 64 KiB); an upload has its own limit.
MAX_FORM_BYTES = 256 * 1024
#: A body gets ``console.body_timeout_s`` plus one second per MiB it may be to arrive.
MIN_BODY_RATE = 1 << 20
#: How long the discarding of an unread body waits for the next chunk before it gives up.
DISCARD_IDLE_S = 5.0
_CAP = "omnicore.body_cap"
_discarding: set[asyncio.Task[None]] = set()


def limit_body(request: Request, limit: int) -> None:
    """Lower the cap of this request's body to ``limit`` bytes (before reading it)."""
    scope = request.scope
    scope[_CAP] = min(int(scope.get(_CAP, limit)), limit)


def _declared(headers: list[tuple[bytes, bytes]]) -> int | None:
    for key, value in headers:
        if key.lower() == b"content-length":
            return int(value) if value.isdigit() else -1  # bytes: ASCII digits only
    return None


def _chunked(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(key.lower() == b"transfer-encoding" for key, _ in headers)


@dataclass(eq=False)
class BodyLimits(HttpMiddleware):
    """ASGI middleware: request bodies capped at ``max_bytes`` (or a route's lower cap) and
    read within ``timeout_s`` plus ``1 s`` per MiB of their size or cap.

    The console runs it as its one middleware, doing in the same pass what would otherwise
    take a layer each (issue 63: every layer is a call and a wrapped ``send`` per message):
    ``headers`` are appended to every answer's headers, refusals included, and ``check``
    (the request guard: :func:`omnicore.console.guard.refusal`) is asked first; a request it
    refuses is answered with its error, after the body's own checks (as a guard inside this
    middleware would be). A path under one of ``mounts`` goes from here straight to its app,
    with the scope Starlette's router gives it (``Mount.matches``), past the exception
    middleware and the router's walk of the console's routes (the plugins' routes, issue 65:
    some 10 µs of a request's CPU); such an app answers every request itself. While tracing
    is on, ``trace`` begins each request's span here too, refusals included.
    """

    _: KW_ONLY
    max_bytes: int
    timeout_s: float
    headers: tuple[tuple[bytes, bytes], ...] = ()
    check: Callable[[Scope], ApiError | None] | None = None
    mounts: tuple[Mount, ...] = ()
    #: Begins a request's span while tracing is on: ``trace(scope, send)`` is the span, the
    #: ``send`` the answer goes through, ended with ``span.end(error)``; None: no span
    #: (:func:`omnicore.telemetry.asgi.request_spans`).
    trace: Callable[[Scope, Send], Any] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # HttpMiddleware's, with the request's span begun first and ended last in the same
        # frame (issue 62): a middleware of its own around this one was a coroutine more on
        # every traced request, and a frame more each time the request waited.
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        span = self.trace(scope, send) if self.trace is not None and telemetry.ON else None
        if span is None:
            await self.http(scope, receive, send)
            return
        try:
            await self.http(scope, receive, span)
        except BaseException as exc:
            span.end(exc)
            raise
        span.end(None)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = _declared(scope["headers"])
        extra = self.headers
        if declared is not None and not 0 <= declared <= self.max_bytes:
            error = ApiError(413, f"the request body is {declared} bytes; the console takes "
                                  f"at most {self.max_bytes}", headers={"Connection": "close"})

            async def plain(message: Message) -> None:
                if message["type"] == "http.response.start" and extra:
                    message["headers"] = [*message.get("headers", ()), *extra]
                await send(message)

            await error_response(error)(scope, receive, plain)
            return
        scope[_CAP] = self.max_bytes
        loop = asyncio.get_running_loop()
        received = 0
        deadline: float | None = None
        # HTTP/1.1: a request with neither header has no body at all (HTTP/2 and 3 frame a
        # body without either: counted as any other).
        http1 = scope.get("http_version", "1.1") in ("1.0", "1.1")
        done = not (declared or _chunked(scope["headers"])) and http1
        # Hypercorn's receive is its request's queue's get: a chunk already queued is taken
        # at once, with no deadline to set up (a timer made and cancelled was a tenth of an
        # invoke's cost in the console, issue 63); only a wait for one is timed.
        queue = getattr(receive, "__self__", None)
        queued: asyncio.Queue[Message] | None = \
            queue if isinstance(queue, asyncio.Queue) else None

        async def bounded() -> Message:
            nonlocal received, deadline, done
            if done:  # the body is in: what follows is the wait for a disconnect
                return await receive()
            cap = int(scope[_CAP])
            if deadline is None:
                size = cap if declared is None else min(declared, cap)
                deadline = loop.time() + self.timeout_s + size / MIN_BODY_RATE
            try:
                if queued is not None and not queued.empty():
                    message = queued.get_nowait()  # what awaiting get() would return now
                else:
                    # A timeout scope, not wait_for: wait_for runs receive() as a task of its
                    # own, a turn of the event loop more for every request with a body. Its
                    # timer is made in a context of nothing: cancelled, it stays in the loop's
                    # heap until its time (the body's deadline, 30 s and more), and would hold
                    # the context current (a traced request's span context, and the objects
                    # that keep it, brought on the young collections of issue 62).
                    async with asyncio.timeout_at(None) as scope_of:
                        contextvars.Context().run(scope_of.reschedule, deadline)
                        message = await receive()
            except TimeoutError:
                raise ApiError(408, f"the request body did not arrive in time (it has "
                                    f"{self.timeout_s:g} s plus 1 s per MiB; "
                                    f"console.body_timeout_s)", type="BodyTimeout") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    raise ApiError(413, f"the request body exceeds the limit of {cap} bytes")
                done = not message.get("more_body", False)
            return message

        # An answer begun before its body is in closes an HTTP/1 connection (the rest of the
        # body would be read as the next request); an HTTP/2 stream is the server's to end
        # (a connection header there is a protocol error: the connection dropped).
        async def answer(message: Message) -> None:
            nonlocal done
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra] \
                    if done or not http1 \
                    else [*message.get("headers", ()), *extra, (b"connection", b"close")]
            # The server ends the request inside this last send, by queueing a disconnect on
            # the queue that unread body chunks filled: empty it first, or that send hangs.
            if message["type"] == "http.response.body" and not message.get("more_body") \
                    and not done:
                # What is queued already is taken here: the end of a body that came whole (a
                # small body a refusal never read; an HTTP/2 stream's end, an empty last
                # chunk, when it was queued before the answer) needs no task to wait for it.
                # Else a task takes the rest, up to the body's end.
                while queued is not None and not done and not queued.empty():
                    taken = queued.get_nowait()
                    done = taken["type"] != "http.request" or not taken.get("more_body", False)
                if not done:
                    # In a context of nothing: its waits' timers (5 s) would hold the
                    # request's (a traced request's span context, issue 62) long after its
                    # answer.
                    task = loop.create_task(_discard(receive), context=contextvars.Context())
                    _discarding.add(task)
                    task.add_done_callback(_discarding.discard)
            await send(message)

        refused = self.check(scope) if self.check is not None else None
        if refused is not None:
            await error_response(refused)(scope, bounded, answer)
            return
        path = scope["path"]
        for mount in self.mounts:
            # What Mount.matches takes: "/prefix/" and more, no newline (its regex's '.*'),
            # under no root_path of the server's (the router's own matching does the rest).
            start = mount.path + "/"
            if path.startswith(start) and "\n" not in path and not scope.get("root_path"):
                scope["route"] = mount
                scope["path_params"] = {**scope.get("path_params", {}),
                                        "path": path[len(start):]}
                scope["app_root_path"] = scope.get("app_root_path", "")
                scope["root_path"] = mount.path
                scope["endpoint"] = mount.app
                await mount.app(scope, bounded, answer)
                return
        await self.app(scope, bounded, answer)


async def _discard(receive: Receive) -> None:
    """Take what the server still queues for an unread body, until its end (its last chunk,
    or the request's end) or until nothing comes for :data:`DISCARD_IDLE_S`.

    Both the connection's reader (more chunks) and the server's own end of the request (the
    disconnect message it puts before it closes the socket) wait on that queue; once the
    body's last chunk is taken, the queue has room for what the server puts after it. (It
    waited out the idle time after every body, 5 s a request: over HTTP/2, a stream's end
    comes as an empty last chunk, often queued only after the answer.)
    """
    with contextlib.suppress(TimeoutError, asyncio.CancelledError):
        while True:
            async with asyncio.timeout(DISCARD_IDLE_S):
                message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (counted as it arrives)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdecimal() and int(declared) > limit:
        raise ApiError(413, f"the request body is {declared} bytes; the limit is {limit}")
    limit_body(request, limit)
    return await request.body()


def parse_json(raw: bytes | str, what: str = "the body") -> Any:
    """``raw`` as JSON, refused with 400 when invalid, nested deeper than
    :data:`~omnicore.capabilities.guestjson.MAX_DEPTH` levels, or holding a string that is not
    Unicode text (a ``\\uD800`` escape with no pair: JSON's grammar takes it, RFC 8259 §8.2
    leaves its meaning open, I-JSON refuses it). Refused here, once, for every route: such a
    string cannot become UTF-8 bytes, and each route that made it some (a plugin's input,
    a key, a secret) failed with 500."""
    try:
        doc = guestjson.loads(raw, max_depth=guestjson.MAX_DEPTH)
    except ValueError as exc:  # UnicodeDecodeError too; over-long integers
        raise ApiError(400, f"{what} is not valid JSON: {str(exc)[:200]}",
                       type="InvalidJson") from None
    # Only an escape makes one (raw UTF-8 cannot hold a surrogate): most bodies skip the walk.
    if _SURROGATE_ESCAPE.search(raw if isinstance(raw, bytes) else raw.encode(
            "utf-8", "surrogatepass")):
        lone = _lone_surrogate(doc)
        if lone is not None:
            raise ApiError(400, f"{what} is not valid JSON text: a string holds a lone "
                                f"surrogate (\\u{lone:04x}), which is not Unicode; send bytes "
                                "that are not text as base64", type="InvalidJson")
    return doc


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _lone_surrogate(doc: Any) -> int | None:
    """The first lone surrogate's code point in a string of ``doc`` (keys too), or None.
    (A pair of escapes is one character once parsed.) Iterative: ``doc`` nests 64 deep."""
    stack = [doc]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            found = _SURROGATE.search(item)
            if found:
                return ord(found.group())
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


async def json_body(request: Request, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    """The body as a JSON object (an empty body is ``{}``), at most ``limit`` bytes (1 MiB)
    and 64 levels, with no field its operation's documented body does not name."""
    doc = parse_json(await read_body(request, limit) or b"{}")
    if not isinstance(doc, dict):
        raise ApiError(400, "the body must be a JSON object", type="InvalidJson")
    route = request.scope.get("route")
    path = getattr(route, "path_format", None)
    if path is not None:
        method = request.method
        known = _flat.get((method, path), _UNSEEN)
        if known is _UNSEEN:
            known = _flat[method, path] = _flat_fields(openapi.request_schema(method, path))
        # A flat body (an invoke's) is checked by its keys alone; any stray, and any other
        # body, goes the whole way (which names the stray).
        if known is None or not known.issuperset(doc):
            unknown_fields(doc, openapi.request_schema(method, path))
    return doc


#: Per operation (method, route path): the fields of its body when none of them is an
#: object or an array of them (so a stray can only be a top-level key), else None. The
#: operations are the console's own routes: a bounded table.
_flat: dict[tuple[str, str], frozenset[str] | None] = {}
_UNSEEN = frozenset({"\0unseen"})


def _flat_fields(schema: dict[str, Any] | None) -> frozenset[str] | None:
    """The fields a body of ``schema`` may have, when :func:`unknown_fields` would check
    nothing below them (each field's schema a plain value: no properties, items or oneOf);
    None otherwise (``oneOf``, open objects, nested ones)."""
    schema = openapi.resolve(schema if schema is not None
                             else {"type": "object", "properties": {}})
    if "oneOf" in schema or "properties" not in schema or schema.get("additionalProperties"):
        return None
    for sub in schema["properties"].values():
        sub = openapi.resolve(sub)
        if "properties" in sub or "items" in sub or "oneOf" in sub:
            return None
    return frozenset(schema["properties"])


def unknown_fields(doc: Any, schema: dict[str, Any] | None, where: str = "the body") -> None:
    """Refuse (422) a key of ``doc`` that its object ``schema`` (OpenAPI, ``$ref`` and
    ``oneOf`` followed) does not name; nested objects and arrays of them are checked too.
    ``None``: the operation documents no body, so it takes no field at all."""
    if not isinstance(doc, dict | list):  # a value has no field to stray: nothing to resolve
        return
    # None (no body documented) takes no field; ``{}`` is JSON Schema's any value (an
    # event's ``data``), whose fields are its own: nothing to refuse in it.
    schema = openapi.resolve(schema if schema is not None
                             else {"type": "object", "properties": {}})
    if "oneOf" in schema:
        # The branch the body meant: the one it strays least from (first on a tie).
        branches = [openapi.resolve(b) for b in schema["oneOf"]]
        schema = min(branches, key=lambda b: len(_strays(doc, b)))
    if isinstance(doc, list) and "items" in schema:
        for i, item in enumerate(doc):
            unknown_fields(item, schema["items"], f"{where}[{i}]")
        return
    if not isinstance(doc, dict) or "properties" not in schema:
        return
    strays = _strays(doc, schema)
    if strays:
        known = ", ".join(schema["properties"]) or "none: send {} or no body"
        name = strays[0][:60]
        raise ApiError(422, f"unknown field {name!r} in {where}; the known fields are: "
                            f"{known}", type="UnknownField", field=name)
    for key, sub in schema["properties"].items():
        if key in doc:
            unknown_fields(doc[key], sub, f"'{key}'" if where == "the body"
                           else f"{where}.{key}")


def _strays(doc: Any, schema: dict[str, Any]) -> list[str]:
    if not isinstance(doc, dict) or "properties" not in schema \
            or schema.get("additionalProperties"):
        return []
    return [key for key in doc if key not in schema["properties"]]


async def form_body(request: Request) -> dict[str, str]:
    """A posted URL-encoded form, read up to :data:`MAX_FORM_BYTES`."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind not in ("", "application/x-www-form-urlencoded"):
        raise ApiError(415, "post this form as application/x-www-form-urlencoded")
    raw = await read_body(request, MAX_FORM_BYTES)
    return dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))


def decode_text(value: object, encoding: object, field: str) -> bytes:
    """The bytes of a JSON body's string ``field``: UTF-8 text, or base64 when ``encoding`` says
    so; 422 otherwise. Errors never quote the value (it may be a secret)."""
    if not isinstance(value, str):
        raise ApiError(422, f"'{field}' must be a string (text, or base64 with "
                            "encoding=base64)", type="BadRequest")
    if encoding == "text":
        return value.encode()
    if encoding == "base64":
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(422, f"'{field}' is not valid base64", type="BadRequest") from None
    raise ApiError(422, "'encoding' must be text or base64", type="BadRequest")
