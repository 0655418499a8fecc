"""The bounded event store behind /mcp's resumable SSE streams."""

from __future__ import annotations

import anyio
import mcp_types as types
import pytest
from mcp.server.streamable_http import EventMessage

from omnicore.mcp import eventstore
from omnicore.mcp.eventstore import MemoryEventStore


def message(n: int) -> types.JSONRPCNotification:
    return types.JSONRPCNotification(jsonrpc="2.0", method=f"n{n}")


def replay(store: MemoryEventStore, last: str) -> tuple[str | None, list[str]]:
    got: list[str] = []

    async def send(event: EventMessage) -> None:
        assert isinstance(event.message, types.JSONRPCNotification) and event.event_id
        got.append(event.message.method)

    return anyio.run(store.replay_events_after, last, send), got


def test_replay_sends_what_followed_an_event_of_the_same_stream_only() -> None:
    store = MemoryEventStore()

    async def fill() -> list[str]:
        ids = [await store.store_event("a", None)]  # the priming event: never replayed
        ids += [await store.store_event("a", message(i)) for i in range(3)]
        await store.store_event("b", message(9))
        return ids

    ids = anyio.run(fill)
    assert replay(store, ids[0]) == ("a", ["n0", "n1", "n2"])
    assert replay(store, ids[2]) == ("a", ["n2"])
    assert replay(store, "nope.1") == (None, [])
    assert replay(store, ids[0].split(".")[0] + ".x") == (None, [])


def test_old_events_and_streams_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(eventstore, "PER_STREAM", 2)
    monkeypatch.setattr(eventstore, "STREAMS", 2)
    store = MemoryEventStore()

    async def fill(stream: str, n: int) -> list[str]:
        return [await store.store_event(stream, message(i)) for i in range(n)]

    first = anyio.run(fill, "a", 4)
    # n1 is no longer kept: a replay after n0 would miss it, so nothing is replayed.
    assert replay(store, first[0]) == (None, [])
    assert replay(store, first[2]) == ("a", ["n3"])
    anyio.run(fill, "b", 1)
    anyio.run(fill, "c", 1)  # "a" is the oldest stream: it goes
    assert replay(store, first[2]) == (None, [])
