"""The last events of each SSE stream of ``/mcp``, so a client that lost its connection can
resume (``Last-Event-ID``), and so every stream opens with the priming event of SEP-1699 (an
event id and a ``retry`` hint, sent only when the server can replay what follows it).

Bounded: a stream keeps its last :data:`PER_STREAM` events and the store its last
:data:`STREAMS` streams; a client asking for an older event gets nothing replayed (the SDK
then answers as for an unknown id). Event ids carry a random key per stream, so an id is a
capability: only a client that received one can replay its stream — and a session id, bound
to its user, is still needed to reach it (omnicore.mcp.http).
"""

from __future__ import annotations

import secrets
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from mcp.server.streamable_http import EventCallback, EventId, EventMessage, EventStore, StreamId
from mcp_types import JSONRPCMessage

__all__ = ["PER_STREAM", "STREAMS", "MemoryEventStore"]

PER_STREAM = 256
STREAMS = 1024


@dataclass
class _Stream:
    stream_id: StreamId
    key: str
    next_seq: int = 0
    events: deque[tuple[int, JSONRPCMessage | None]] = field(
        default_factory=lambda: deque(maxlen=PER_STREAM))


class MemoryEventStore(EventStore):
    """The SDK's :class:`EventStore`, in memory, bounded."""

    def __init__(self) -> None:
        self._by_key: OrderedDict[str, _Stream] = OrderedDict()
        self._keys: dict[StreamId, str] = {}

    async def store_event(self, stream_id: StreamId, message: JSONRPCMessage | None) -> EventId:
        key = self._keys.get(stream_id)
        stream = self._by_key.get(key) if key is not None else None
        if stream is None:
            stream = _Stream(stream_id, secrets.token_urlsafe(12))
            self._keys[stream_id] = stream.key
            self._by_key[stream.key] = stream
            while len(self._by_key) > STREAMS:
                _, old = self._by_key.popitem(last=False)
                self._keys.pop(old.stream_id, None)
        else:
            self._by_key.move_to_end(stream.key)
        seq = stream.next_seq
        stream.next_seq += 1
        stream.events.append((seq, message))
        return f"{stream.key}.{seq}"

    async def replay_events_after(self, last_event_id: EventId,
                                  send_callback: EventCallback) -> StreamId | None:
        key, _, seq_text = last_event_id.rpartition(".")
        stream = self._by_key.get(key)
        if stream is None or not seq_text.isdecimal():
            return None
        after = int(seq_text)
        if stream.events and stream.events[0][0] > after + 1:
            return None  # what followed it is no longer kept: nothing partial
        for seq, message in list(stream.events):
            if seq > after and message is not None:
                await send_callback(EventMessage(message, f"{key}.{seq}"))
        return stream.stream_id
