"""An HTTP/2 stream answered before its request body is in: the stream ends, the connection
stays (Hypercorn's own ``H2Protocol`` dropped the connection).

A route may answer before it has read the request's body (a 413 at the cap, a refusal
before reading, a 503 at a route's limit): over HTTP/2 that answer ends its stream
(``END_STREAM``) while the client's DATA frames for it are still on the way. Hypercorn
0.18 forgets the stream as the answer ends (``H2Protocol._close_stream``), and the next
DATA frame for it raised ``KeyError`` in ``H2Protocol._handle_events``
(``self.streams[event.stream_id]``; its ``StreamEnded`` branch guards the same lookup,
its ``DataReceived`` one does not: pgjones/hypercorn#329, unmerged #312/#334/#365). The
exception ended the connection's task, which closed the socket with no ``GOAWAY`` and the
client's unread frames in its receive buffer, so the kernel reset it: the client's next
write failed (``EPIPE``) and the reset could discard the answer it had not yet read. Every
other request on the connection went with it. A race: only a frame read after the answer
ended does it, which a loaded machine makes common.

:class:`H2Protocol` does what RFC 9113 section 8.1 describes instead:

- a frame for a stream whose answer is over is taken and dropped (its bytes still
  acknowledged, so the connection's flow-control window does not shrink by them), and
- once the answer is complete (``END_STREAM`` sent) while the request is still open, the
  stream is reset with ``NO_ERROR``: the client stops sending that body and keeps the
  answer (clients must not discard a response for it); the h2 state machine then answers
  any frame still in flight for the stream itself, the connection window included.

And a connection that ends (the client gone, or its protocol error) while an answer is still
on its way ends on the server too: Hypercorn left its streams' buffers open, and an answer's
end (which drains its buffer) then waited for ever for the sending task that stopped with
the connection, holding the connection's tasks until the server's stop.

An answer that ends unfinished after its head (the application returned without its body's
end: a route's trap, cap or deadline mid-body) is its stream's reset (``INTERNAL_ERROR``,
RFC 9113 §5.4.2: a stream error ends the stream), not a stream left waiting with its buffer
open, which ended the connection and every other request on it.

:class:`H2Protocol` also hands a request's trailers (a HEADERS frame ending the stream after
its DATA: h2's ``TrailersReceived``, which Hypercorn ignores) to its stream, as
omnicore/console/http1.py's ``TrailerStream`` takes them (the scope's
``http.request.trailers``, filled before the body's last message).

:func:`install` puts it in Hypercorn's place (``hypercorn.protocol.ProtocolWrapper`` makes
the connection's protocol from that module's ``H2Protocol``); the console does before it
serves, through http1.py's ``install`` (its one door, which also makes ``TrailerStream``
Hypercorn's stream for HTTP/2).
"""

from __future__ import annotations

import contextlib
from typing import Any

import h2.events
import h2.exceptions
import hypercorn.protocol
from h2.errors import ErrorCodes
from h2.stream import StreamState
from hypercorn.events import Closed
from hypercorn.events import Event as IOEvent
from hypercorn.protocol.events import Event as StreamEvent
from hypercorn.protocol.events import StreamClosed, Trailers
from hypercorn.protocol.h2 import H2Protocol as _HypercornH2
from priority.priority import MissingStreamError

__all__ = ["H2Protocol", "install"]


class _Ended:
    """What a frame for a stream whose answer is over is handed to: nothing to do."""

    async def handle(self, event: object) -> None:
        return None


_ENDED = _Ended()


class _Streams(dict[int, Any]):
    """The connection's live streams; one that is gone reads as :class:`_Ended` (not added).

    Hypercorn looks a frame's stream up with ``streams[stream_id]`` and then acknowledges
    the frame's bytes; a stream it has forgotten raised ``KeyError`` between the two."""

    def __missing__(self, stream_id: int) -> _Ended:
        return _ENDED


class H2Protocol(_HypercornH2):
    """Hypercorn's HTTP/2 protocol; a stream answered before its body is in ends, and the
    connection carries on (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.streams = _Streams()

    async def handle(self, event: IOEvent) -> None:
        await super().handle(event)
        if isinstance(event, Closed):
            # The connection is gone (the client's end, or its protocol error: GOAWAY) while
            # answers may still be on their way: their buffers closed, so an answer's end
            # (Hypercorn drains its stream's buffer for it) does not wait for a sender that
            # stopped with the connection. Hypercorn left them open: the answer's task, and
            # with it the connection's, waited until the server's stop.
            for buffer in list(self.stream_buffers.values()):
                await buffer.close()

    async def _handle_events(self, events: list[h2.events.Event]) -> None:
        # A request's trailers reach its stream before its end does (h2 gives the end, a
        # StreamEnded, after them): the events before them first (the stream may be made
        # there), then the trailers, then the rest.
        start = 0
        for i, event in enumerate(events):
            if isinstance(event, h2.events.TrailersReceived):
                if i > start:
                    await super()._handle_events(events[start:i])
                take = getattr(self.streams.get(event.stream_id), "take_trailers", None)
                if take is not None and event.headers:  # (http1.TrailerStream's)
                    take(event.headers)
                start = i + 1
        await super()._handle_events(events[start:] if start else events)

    async def _send_data(self, stream_id: int) -> None:
        await super()._send_data(stream_id)
        if stream_id not in self.stream_buffers:  # its answer is out (END_STREAM), or reset
            await self._stop_request(stream_id)

    async def stream_send(self, event: StreamEvent) -> None:
        if isinstance(event, StreamClosed):
            await self._cut(event.stream_id)
        await super().stream_send(event)
        if isinstance(event, Trailers):  # an answer ended by its trailers
            await self._stop_request(event.stream_id)

    async def _cut(self, stream_id: int) -> None:
        """Reset with ``INTERNAL_ERROR`` a stream whose answer ends unfinished (a trap, a
        cap or a deadline after its head was sent): the stream alone ends, as RFC 9113
        §5.4.2 has a stream error do, and the client sees it incomplete. Hypercorn left
        it waiting with its buffer open, and the connection's other streams with it."""
        buffer = self.stream_buffers.get(stream_id)
        stream = self.connection.streams.get(stream_id)
        if buffer is None or buffer.complete or stream is None or \
                stream.state_machine.state in (StreamState.CLOSED, StreamState.HALF_CLOSED_LOCAL):
            # its body's end sent or on its way (a complete buffer's END_STREAM follows its
            # last DATA), its trailers sent, or the stream reset already
            return
        with contextlib.suppress(h2.exceptions.ProtocolError):
            # (refused once the connection is closing, a GOAWAY taken: its end ends this)
            self.connection.reset_stream(stream_id, ErrorCodes.INTERNAL_ERROR)
        # The buffer is the send task's to drop, never this: a write of the stream's DATA
        # may be under way, after which the task reads the buffer again. Closed, its end
        # fails on the reset stream, and Hypercorn's own clean-up drops it.
        await buffer.close()
        with contextlib.suppress(MissingStreamError):
            self.priority.unblock(stream_id)
        await self.has_data.set()
        await self._flush()

    async def _stop_request(self, stream_id: int) -> None:
        """Reset with ``NO_ERROR`` a stream whose answer is complete while its request is
        not: the client stops sending a body nobody reads."""
        stream = self.connection.streams.get(stream_id)
        if stream is not None and stream.state_machine.state is StreamState.HALF_CLOSED_LOCAL:
            self.connection.reset_stream(stream_id, ErrorCodes.NO_ERROR)
            await self._flush()


def install() -> None:
    """Have Hypercorn make :class:`H2Protocol` for every HTTP/2 connection (idempotent)."""
    hypercorn.protocol.H2Protocol = H2Protocol  # type: ignore[attr-defined]
