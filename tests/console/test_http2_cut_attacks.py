"""Attacks on H2Protocol._cut (an answer cut after its head resets its stream) and on the
one field grammar (omnicore/httpfields.py) as its callers use it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest

from omnicore.console import http2


def _client() -> h2.connection.H2Connection:
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                             header_encoding=None))
    c.initiate_connection()
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 30})
    c.increment_flow_control_window(1 << 30)
    return c


def _request(c: h2.connection.H2Connection, stream_id: int, method: str = "GET") -> None:
    c.send_headers(stream_id, [(b":method", method.encode()), (b":path", b"/"),
                               (b":scheme", b"http"), (b":authority", b"x")],
                   end_stream=True)


class _App:
    """A Hypercorn app wrapper: each stream's answer is its head, one body chunk, and then,
    when ``ends[stream_id]`` is set, either its end (``finish``) or a cut (the app returns
    with its body unfinished, as a trapped route guest's answer does)."""

    def __init__(self, body: bytes = b"x" * 1000, cut: frozenset[int] = frozenset({1})) -> None:
        self.body = body
        self.cut = cut
        self.ends: dict[int, asyncio.Event] = {}
        self.done: dict[int, asyncio.Event] = {}
        self.errors: list[BaseException] = []

    def events(self, stream_id: int) -> tuple[asyncio.Event, asyncio.Event]:
        return (self.ends.setdefault(stream_id, asyncio.Event()),
                self.done.setdefault(stream_id, asyncio.Event()))

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any],
                       send: Callable[..., Any], sync_spawn: Any, call_soon: Any) -> None:
        stream_id = self._next()
        end, done = self.events(stream_id)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": self.body, "more_body": True})
        await end.wait()
        try:
            if stream_id in self.cut:
                await send(None)  # the cut: the app ended without its body's end
            else:
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        except Exception as exc:
            self.errors.append(exc)
        finally:
            done.set()

    _n = -1

    def _next(self) -> int:
        self._n += 2
        return self._n


class _Wire:
    """The connection's writes: each RawData to the client, and a gate the send task (the
    one writing DATA) stops at while it is shut, as a client not reading makes it."""

    def __init__(self) -> None:
        self.data: list[bytes] = []
        self.gate = asyncio.Event()
        self.blocked = asyncio.Event()
        self.hold_sender = False
        self.client: h2.connection.H2Connection | None = None
        self.events: list[Any] = []
        self.over: set[int] = set()
        self.all_over = asyncio.Event()
        self.expect: set[int] = set()

    async def send(self, event: Any) -> None:
        from hypercorn.events import RawData

        if isinstance(event, RawData):
            self.data.append(event.data)
            if self.client is not None:
                for e in self.client.receive_data(event.data):
                    self.events.append(e)
                    if isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)):
                        self.over.add(e.stream_id)
                if self.expect and self.expect <= self.over:
                    self.all_over.set()
            task = asyncio.current_task()
            if self.hold_sender and task is not None and task.get_name() == "sender":
                self.blocked.set()
                await self.gate.wait()


async def _protocol(app: _App, wire: _Wire) -> tuple[http2.H2Protocol, Any]:
    from hypercorn.asyncio.task_group import TaskGroup
    from hypercorn.asyncio.worker_context import WorkerContext
    from hypercorn.config import Config

    tg = TaskGroup(asyncio.get_running_loop())
    await tg.__aenter__()
    proto = http2.H2Protocol(app, Config(), WorkerContext(None), tg, {}, False,
                             ("127.0.0.1", 1), ("127.0.0.1", 2), wire.send)
    proto.connection.initiate_connection()
    await proto._flush()
    return proto, tg


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


# Found by this file, fixed: _cut drops the stream's buffer while the send task awaits the
# write of that stream's DATA; Hypercorn's _send_data then looks the buffer up twice (KeyError
# out of its KeyError handler): the connection's send task dies with every other stream on it
def test_a_cut_while_its_data_is_being_written_leaves_the_send_task_standing() -> None:
    """The send task writes a stream's DATA (the client slow to read: the write waits);
    meanwhile the route's guest traps and the answer is cut (_cut drops the stream's
    buffer). Then the write completes: Hypercorn's _send_data looks the stream's buffer up
    again (KeyError) and, in its handler for exactly that, once more (KeyError raised out
    of the send task: the connection's sender dies, with every other stream on it)."""

    async def scenario() -> BaseException | None:
        app = _App()
        wire = _Wire()
        proto, tg = await _protocol(app, wire)
        sender = asyncio.get_running_loop().create_task(proto.send_task(), name="sender")
        client = _client()
        _request(client, 1)
        wire.hold_sender = True
        await proto.handle(_raw(client.data_to_send()))
        await wire.blocked.wait()  # the send task is writing stream 1's DATA
        end, done = app.events(1)
        end.set()
        await done.wait()  # the answer is cut
        wire.hold_sender = False
        wire.gate.set()
        # the sender runs on; the connection then ends and the sender with it
        from hypercorn.events import Closed
        await proto.handle(Closed())
        error: BaseException | None = None
        try:
            await asyncio.wait_for(sender, 10)
        except BaseException as exc:
            error = exc
        await tg.__aexit__(None, None, None)
        return error

    error = _run(scenario())
    assert error is None, repr(error)


def _raw(data: bytes) -> Any:
    from hypercorn.events import RawData

    return RawData(data=data)


async def _two_streams(hold: bool, cut: frozenset[int], client_reset: bool = False) -> list[Any]:
    app = _App(cut=cut)
    wire = _Wire()
    proto, tg = await _protocol(app, wire)
    client = _client()
    wire.client = client
    wire.expect = {3} if client_reset else {1, 3}
    sender = asyncio.get_running_loop().create_task(proto.send_task(), name="sender")
    _request(client, 1)
    _request(client, 3)
    wire.data.clear()
    await proto.handle(_raw(client.data_to_send()))
    e1, d1 = app.events(1)
    e3, d3 = app.events(3)
    if hold:
        wire.hold_sender = True
        await wire.blocked.wait()
    if client_reset:  # the client gives up on stream 1 as its answer is cut
        client.reset_stream(1, h2.errors.ErrorCodes.CANCEL)
        await proto.handle(_raw(client.data_to_send()))
    e1.set()
    await d1.wait()
    wire.hold_sender = False
    wire.gate.set()
    e3.set()
    over = asyncio.get_running_loop().create_task(wire.all_over.wait())
    # both streams over on the wire, or the send task gone (the safety net: 10 s)
    await asyncio.wait({sender, over}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
    over.cancel()
    from hypercorn.events import Closed
    await proto.handle(Closed())  # (closes the buffers an answer's end may drain)
    await asyncio.wait_for(d3.wait(), 10)
    error = None
    try:
        await asyncio.wait_for(sender, 10)
    except Exception as exc:
        error = exc
    await tg.__aexit__(None, None, None)
    assert error is None, repr(error)
    return wire.events


def _sizes(events: list[Any]) -> dict[int, int]:
    sizes: dict[int, int] = {}
    for e in events:
        if isinstance(e, h2.events.DataReceived):
            sizes[e.stream_id] = sizes.get(e.stream_id, 0) + len(e.data)
    return sizes


@pytest.mark.parametrize("hold", [True, False])
def test_finished_answers_are_never_reset(hold: bool) -> None:
    """Two answers finished (stream 1's DATA write held by a slow client as its answer
    ends, or not): each ends with END_STREAM after its whole body, neither is reset."""
    events = _run(_two_streams(hold, frozenset()))
    assert not [e for e in events if isinstance(e, h2.events.StreamReset)], events
    assert _sizes(events) == {1: 1000, 3: 1000}
    assert {e.stream_id for e in events if isinstance(e, h2.events.StreamEnded)} == {1, 3}


def test_a_cut_answer_resets_its_stream_alone() -> None:
    """Stream 1's answer is cut after its head and some body: its stream is reset with
    INTERNAL_ERROR, and stream 3 on the same connection is answered whole."""
    events = _run(_two_streams(False, frozenset({1})))
    resets = {e.stream_id: e.error_code for e in events if isinstance(e, h2.events.StreamReset)}
    assert resets == {1: h2.errors.ErrorCodes.INTERNAL_ERROR}, events
    assert _sizes(events)[3] == 1000
    assert {e.stream_id for e in events if isinstance(e, h2.events.StreamEnded)} == {3}


# Found by this file, fixed: the same race on a live connection: stream 1 cut while its DATA
# is being written kills the send task (KeyError), and stream 3's finished answer is never
# sent
def test_a_cut_during_its_write_leaves_the_other_stream_answered() -> None:
    events = _run(_two_streams(True, frozenset({1})))
    assert _sizes(events).get(3) == 1000


def test_a_cut_as_the_client_resets_the_stream_is_quiet() -> None:
    """The client resets stream 1 (CANCEL) just before its answer is cut: no reset of the
    server's for a stream already closed, no error, and stream 3 is answered whole."""
    events = _run(_two_streams(False, frozenset({1}), client_reset=True))
    assert not [e for e in events if isinstance(e, h2.events.StreamReset)], events
    assert _sizes(events)[3] == 1000
    assert not [e for e in events if isinstance(e, h2.events.ConnectionTerminated)], events


# Found by this file, fixed: _cut resets the stream with no guard for a closed connection:
# after the client's GOAWAY (h2's connection CLOSED, before the server's read loop hands the
# protocol Closed) a cut answer's reset_stream raises h2 ProtocolError out of the app's send
# (a route's send raising an h2 error at its end)
def test_a_cut_after_the_clients_goaway_ends_quietly() -> None:
    """The client ends the connection (GOAWAY) with stream 1's answer mid-body; stream 1
    is then cut (the server's read loop not yet at its end: the protocol has not been
    handed Closed): its answer's end raises nothing, and the send task stops cleanly."""

    async def scenario() -> list[BaseException]:
        app = _App(cut=frozenset({1}))
        wire = _Wire()
        proto, tg = await _protocol(app, wire)
        client = _client()
        sender = asyncio.get_running_loop().create_task(proto.send_task(), name="sender")
        _request(client, 1)
        await proto.handle(_raw(client.data_to_send()))
        e1, d1 = app.events(1)
        client.close_connection()
        await proto.handle(_raw(client.data_to_send()))
        e1.set()
        await asyncio.wait_for(d1.wait(), 10)
        errors = list(app.errors)
        from hypercorn.events import Closed
        await proto.handle(Closed())  # (the read loop's end)
        await asyncio.wait_for(sender, 10)
        try:
            await tg.__aexit__(None, None, None)
        except BaseException as exc:
            errors.append(exc)
        return errors

    errors = _run(scenario())
    assert errors == [], errors
