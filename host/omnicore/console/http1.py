"""Trailers over HTTP/1.1, both ways, and a request's trailers on every version (Hypercorn
0.18 hands none on).

Hypercorn 0.18 sends response trailers (the ASGI ``http.response.trailers`` extension) over
HTTP/2 and 3 only: its ``HTTPStream`` offers the extension to those versions alone
(``TRAILERS_VERSIONS``) and its ``H11Protocol`` has nothing to send them with. And it drops
a request's trailers on every version: h11 parses a chunked request's trailer section into
``EndOfMessage.headers`` and h2 gives a ``TrailersReceived`` event, and Hypercorn reads
neither. So:

- **Response trailers over HTTP/1.1** (RFC 9112 §7.1.2). An HTTP/1.1 request's scope offers
  ``http.response.trailers``. An answer started with ``"trailers": True`` to a client that
  sent ``TE: trailers`` is framed chunked (its ``content-length`` dropped: trailers ride in
  the last chunk), and its ``http.response.trailers`` go in that last chunk
  (``h11.EndOfMessage(headers=...)``). Without ``TE: trailers``, to an HTTP/1.0 client, for
  a ``HEAD`` or a status with no body, they are dropped and the answer ends as usual
  (RFC 9110 §6.5.1: a sender may discard trailers the recipient did not ask for). On every
  version an empty ``http.response.trailers`` ends the answer with no trailer section (h2
  refuses an empty header block), so an application may start an answer with
  ``"trailers": True`` before it knows whether it will have any, and whether the client
  takes them (its ``te``) is judged here once, by :func:`takes_trailers`. Which fields a
  trailer may carry is the application's to filter (the route server does:
  omnicore/routes/proxy.py ``trailer_fields``).
- **Request trailers, every version.** Every HTTP request's scope carries the extension
  ``http.request.trailers``: a dict whose ``"headers"`` list the server fills with the
  request's trailer fields (``[name, value]``, names lower-case) before it hands on the last
  ``http.request`` message (``more_body`` false), so an application that reads the body to
  its end reads them there. No ASGI server or the ASGI spec defines request trailers (the
  spec's extensions cover response trailers only); this is the smallest addition of that
  spec's shape: nothing changes for an application that does not look, no message is added
  or reordered. The trailer section is bounded as a head is: by h11's
  ``h11_max_incomplete_size`` over HTTP/1.1 (the server answers 431 past it) and by HTTP/2's
  ``max_header_list_size``; a route's own header caps are the route's to apply (the route
  server counts trailers with the headers).

:func:`install` puts :class:`TrailerStream` and :class:`H11Protocol` in Hypercorn's place
(and omnicore/console/http2.py's ``H2Protocol``, which hands h2's request trailers on): the
console's one door to Hypercorn's protocols, called before it serves.
"""

from __future__ import annotations

import time
from typing import Any

import h11
import h11._headers
import h11._util
import hypercorn.protocol
import hypercorn.protocol.h2
import hypercorn.protocol.h11
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.events import Response, StreamClosed, Trailers
from hypercorn.protocol.h11 import H11Protocol as _HypercornH11
from hypercorn.protocol.http_stream import TRAILERS_VERSIONS, ASGIHTTPState, HTTPStream
from hypercorn.utils import build_and_validate_headers, suppress_body

from omnicore.console import http2

__all__ = ["REQUEST_TRAILERS", "H11Protocol", "TrailerStream", "checked_headers", "install",
           "takes_trailers"]

#: The scope extension that carries a request's trailers (its dict's ``"headers"``).
REQUEST_TRAILERS = "http.request.trailers"


def takes_trailers(headers: Any) -> bool:
    """Whether a request's ``te`` header(s) list ``trailers`` (RFC 9110 §10.1.4: a comma
    list of codings, each with optional parameters, whose values may be quoted strings that
    hold commas of their own, §5.6.4)."""
    for name, value in headers:
        # (the word itself first: most te values never hold it, and none is split then)
        if name.lower() == b"te" and b"trailers" in value.lower():
            for member in _members(bytes(value)):
                if member.split(b";", 1)[0].strip().lower() == b"trailers":
                    return True
    return False


def _members(value: bytes) -> list[bytes]:
    """A comma list's members, a comma inside a quoted string (its backslash escapes kept)
    not splitting it."""
    out, start, quoted, escaped = [], 0, False, False
    for i, c in enumerate(value):
        if escaped:
            escaped = False
        elif quoted and c == 0x5C:  # backslash
            escaped = True
        elif c == 0x22:  # double quote
            quoted = not quoted
        elif c == 0x2C and not quoted:  # comma
            out.append(value[start:i])
            start = i + 1
    out.append(value[start:])
    return out


#: Header fields (name, value) that passed h11's field-name and field-value rules, so that
#: the same field is not matched again on the next answer: the console's security headers,
#: a route's sandbox policy (each some 100-200 bytes of regular expression a request, about a
#: tenth of a plugin route's added instructions, issue 65), its content type. Bounded: a
#: field that varies (a date, a length) fills it and it starts over.
_CHECKED: set[tuple[bytes, bytes]] = set()
_CHECKED_MAX = 512
#: The longest field (name and value, in bytes) kept as seen; a longer one is matched on
#: every answer. A plugin chooses its fields (a value up to its route's max_response_bytes):
#: a new long one an answer held up to _CHECKED_MAX of them, megabytes each, for good.
_CHECKED_FIELD = 1024


def checked_headers(headers: list[tuple[bytes, bytes]]) -> Any:
    """``headers`` as h11 sends them (its ``Headers``), each field checked by h11's own rules
    (``normalize_and_validate``: an illegal name or value raises h11's LocalProtocolError) but
    matched only the first time it is seen. Anything not a pair of ``bytes`` goes h11's whole
    way."""
    checked = _CHECKED
    for pair in headers:
        # (Before the set is asked: a bytes subclass's own __eq__ and __hash__ could claim a
        # field seen that is not; a list or a bytearray is no set member.)
        if type(pair) is not tuple or len(pair) != 2 or type(pair[0]) is not bytes \
                or type(pair[1]) is not bytes:
            return h11._headers.normalize_and_validate(headers)
        if pair in checked:
            continue
        name, value = pair
        h11._util.validate(h11._headers._field_name_re, name, "Illegal header name {!r}", name)
        h11._util.validate(h11._headers._field_value_re, value, "Illegal header value {!r}",
                           value)
        if len(name) + len(value) <= _CHECKED_FIELD:
            if len(checked) >= _CHECKED_MAX:
                checked.clear()
            checked.add(pair)
    # The rest of h11's normalizing (lower-cased names, Content-Length and
    # Transfer-Encoding's rules), without its matching again.
    return h11._headers.normalize_and_validate(headers, _parsed=True)


class _Extended:
    """The application as the stream calls it: its scope given the trailer extensions first.
    It holds the stream's trailers, not the stream: a stream holding what holds it was a
    cycle of some 20 objects a request (the stream, its queue, events, scope), left to the
    cyclic collector (a third of a route's added instructions were its collections)."""

    __slots__ = ("app", "trailers")

    def __init__(self, app: Any, trailers: dict[str, list[tuple[bytes, bytes]]]) -> None:
        self.app = app
        self.trailers = trailers

    async def __call__(self, scope: Any, *args: Any) -> None:
        extensions = scope.setdefault("extensions", {})
        extensions[REQUEST_TRAILERS] = self.trailers
        if scope.get("http_version") == "1.1":
            extensions.setdefault("http.response.trailers", {})
        await self.app(scope, *args)


class TrailerStream(HTTPStream):
    """Hypercorn's HTTP stream, with a request's trailers handed on (every version) and
    response trailers sent over HTTP/1.1 (see the module's docstring)."""

    def __init__(self, app: Any, *args: Any, **kwargs: Any) -> None:
        #: The scope's ``http.request.trailers``: filled before the body's last message.
        self.request_trailers: dict[str, list[tuple[bytes, bytes]]] = {"headers": []}
        super().__init__(_Extended(app, self.request_trailers),  # type: ignore[arg-type]
                         *args, **kwargs)
        #: Whether this answer's trailers are sent (decided with its head).
        self._sends_trailers = False
        self._trailers: list[tuple[bytes, bytes]] = []

    def take_trailers(self, headers: Any) -> None:
        """The request's trailer section, as the protocol parsed it (before its end)."""
        self.request_trailers["headers"].extend(
            (bytes(name).lower(), bytes(value)) for name, value in headers)

    async def app_send(self, message: Any) -> None:
        if message is None:
            await super().app_send(message)
            return
        kind = message["type"]
        if kind == "http.response.trailers" and self.state == ASGIHTTPState.TRAILERS:
            if self.closed:  # the client is gone: nothing to send (Hypercorn raised on 1.1)
                return
            # Every version's trailers end here: an empty section ends the body with none
            # (HTTP/2 has no empty header block: h2 refuses one), so an application may
            # declare trailers before it knows whether it has any.
            if self._sends_trailers:
                self._trailers.extend(build_and_validate_headers(message.get("headers", [])))
            if not message.get("more_trailers", False):
                await self._end(self._trailers)
            return
        # (The client's TE read only for an answer with trailers: most have none.)
        if kind == "http.response.start" and self.state == ASGIHTTPState.REQUEST \
                and message.get("trailers", False) \
                and not suppress_body(self.scope["method"], int(message["status"])) \
                and takes_trailers(self.scope["headers"]):
            self._sends_trailers = True
            if self.scope["http_version"] not in TRAILERS_VERSIONS:
                # chunked, so the trailers have a last chunk to ride in (h11 frames an
                # answer of no declared length so to an HTTP/1.1 client)
                message = {**message, "headers": [
                    (name, value) for name, value in message.get("headers", [])
                    if bytes(name).lower() != b"content-length"]}
        await super().app_send(message)

    async def _end(self, trailers: list[tuple[bytes, bytes]]) -> None:
        """The answer's end: its trailers in the last chunk (none: as Hypercorn ends it)."""
        if not trailers:
            await self._send_closed()
            return
        await self.send(Trailers(stream_id=self.stream_id, headers=trailers))
        self.state = ASGIHTTPState.CLOSED
        await self.config.log.access(self.scope, self.response, time.time() - self.start_time)
        await self.send(StreamClosed(stream_id=self.stream_id))


class _Connection(h11.Connection):
    """h11's server side, handing a request's trailer section to ``on_trailers`` as it
    parses the request's end (before the protocol hands the end to the stream)."""

    on_trailers: Any = None

    def next_event(self) -> Any:
        event = super().next_event()
        # (Per event of every request: ``type() is``, where isinstance goes through h11's
        # ABC's instance check.)
        if type(event) is h11.EndOfMessage and event.headers and self.on_trailers is not None:
            self.on_trailers(event.headers)
        return event


class H11Protocol(_HypercornH11):
    """Hypercorn's HTTP/1.1 protocol: a request's trailers reach its stream, and a stream's
    trailers go in the answer's last chunk (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        connection = _Connection(h11.SERVER,
                                 max_incomplete_event_size=self.config.h11_max_incomplete_size)
        connection.on_trailers = self._request_trailers
        self.connection = connection

    def _request_trailers(self, headers: Any) -> None:
        if isinstance(self.stream, TrailerStream):
            self.stream.take_trailers(headers)

    async def stream_send(self, event: StreamEvent) -> None:
        if type(event) is Trailers:  # the last chunk, with the trailer section
            await self._send_h11_event(h11.EndOfMessage(headers=event.headers))
        elif type(event) is Response and event.status_code >= 200:
            # Hypercorn's own answer head (its stream_send), its fields checked once each
            # (checked_headers) where h11 matched every field of every answer.
            headers = [*event.headers, *self.config.response_headers("h11")]
            if self.keep_alive_requests >= self.config.keep_alive_max_requests:
                headers.append((b"connection", b"close"))
            await self._send_h11_event(h11.Response(headers=checked_headers(headers),
                                                    status_code=event.status_code))
        else:
            await super().stream_send(event)


def install() -> None:
    """Have Hypercorn make :class:`H11Protocol` for every HTTP/1.1 connection and
    :class:`TrailerStream` for every HTTP request (both versions), and
    omnicore/console/http2.py's ``H2Protocol`` for every HTTP/2 connection (idempotent)."""
    hypercorn.protocol.H11Protocol = H11Protocol  # type: ignore[attr-defined]
    hypercorn.protocol.h11.HTTPStream = TrailerStream  # type: ignore[attr-defined]
    hypercorn.protocol.h2.HTTPStream = TrailerStream  # type: ignore[attr-defined]
    http2.install()

