"""Redis Streams: inbound through a consumer group (XREADGROUP, XACK, XAUTOCLAIM), outbound
through XADD, whose reply is the entry's id once the server appended it.

The bridge speaks RESP2 itself (as the redis connectors do; no client library): the few
stream commands below, over one asyncio connection per lane. Inbound, each host reads as the
consumer named by its runtime id in the shared group (created at the stream's end, with the
stream, when missing), so each entry goes to one host; on connecting it reads back what it was
given and did not acknowledge, and it claims entries another consumer left unacknowledged for
``redeliver_after_s`` (a host that died). An entry's ``data`` field is the message (an entry
without one arrives as the JSON of its fields); its id is ``STREAM:ENTRY-ID``.

Outbound entries are ``data`` (the event's bytes), ``event`` (its type) and ``id`` (the stable
message id). Redis keeps no duplicate window, so the bridge makes one: the XADD runs in a
script (:data:`_ADD_ONCE`, atomic on the server) that first looks for the message id among the
stream's last :data:`DEDUPE_WINDOW` entries and, found, answers that entry's id and appends
nothing. A retry whose first copy is older than that (or was trimmed by ``max_len``) appears
twice, with the same ``id`` for consumers to drop it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from omnicore.bridges._broker import Received, Settings, within
from omnicore.config.bridges import BridgeInbound, BridgeOutbound

__all__ = ["RedisBroker"]

#: How many of a stream's last entries a publish looks through for its message id.
DEDUPE_WINDOW = 64
#: XADD unless an entry among the last ARGV[1] carries the id field ARGV[2]: that entry's id.
_ADD_ONCE = """
local seen = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', ARGV[1])
for _, entry in ipairs(seen) do
  local f = entry[2]
  for i = 1, #f - 1, 2 do
    if f[i] == 'id' and f[i + 1] == ARGV[2] then return entry[1] end
  end
end
return redis.call('XADD', KEYS[1], unpack(ARGV, 3))
"""

_MAX_LINE = 1 << 16
_MAX_ITEMS = 1 << 20
_MAX_DEPTH = 8


class _RespError(Exception):
    """An error reply (``-ERR ...``)."""


class _TooLarge:
    """A bulk string over the cap, read and thrown away: its size."""

    def __init__(self, size: int) -> None:
        self.size = size


class _Conn:
    """One RESP2 connection; a bulk string over ``cap`` bytes is read off and dropped."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 cap: int) -> None:
        self._r, self._w, self._cap = reader, writer, cap

    async def call(self, *args: bytes | str | int, timeout: float) -> Any:
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            raw = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
        self._w.write(b"".join(out))
        await self._w.drain()
        return await within(self._value(0), timeout)

    async def _line(self) -> bytes:
        line = await self._r.readuntil(b"\r\n")
        if len(line) > _MAX_LINE:
            raise ConnectionError("the Redis server's reply line is too long")
        return line[:-2]

    async def _value(self, depth: int) -> Any:
        if depth > _MAX_DEPTH:
            raise ConnectionError("the Redis server's reply nests too deeply")
        line = await self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            raise _RespError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            if n > self._cap:
                left = n + 2
                while left:
                    left -= len(await self._r.read(min(left, 1 << 16)) or b"") or _eof()
                return _TooLarge(n)
            return (await self._r.readexactly(n + 2))[:-2]
        if kind == b"*":
            n = int(rest)
            if n < 0:
                return None
            if n > _MAX_ITEMS:
                raise ConnectionError("the Redis server's reply has too many items")
            return [await self._value(depth + 1) for _ in range(n)]
        raise ConnectionError(f"the Redis server answered garbage: {line[:40]!r}")

    def close(self) -> None:
        self._w.close()


def _eof() -> int:
    raise ConnectionError("the Redis server closed the connection")


class RedisBroker:
    """One Redis connection of a bridge (:class:`omnicore.bridges.Broker`)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._conn: _Conn | None = None
        self._groups: set[int] = set()
        self._backlog: set[int] = set()
        self._claimed_at: dict[int, float] = {}

    async def connect(self, lane: str) -> None:
        s = self._settings
        parts = urlsplit(s.config.url)
        reader, writer = await s.open(6379, 6379)
        # Over the message cap a bulk string is skipped; the slack covers an entry's fields.
        self._conn = _Conn(reader, writer, s.config.max_message_bytes + 1024)
        if s.secret is not None:
            args = ("AUTH", s.user, s.secret) if s.user else ("AUTH", s.secret)
            await self._conn.call(*args, timeout=self._settings.timeout)
        db = parts.path.strip("/")
        if db:
            await self._conn.call("SELECT", db, timeout=self._settings.timeout)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def _c(self) -> _Conn:
        if self._conn is None:
            raise ConnectionError("not connected")
        return self._conn

    async def _group(self, route: BridgeInbound) -> None:
        if id(route) in self._groups:
            return
        try:
            await self._c().call("XGROUP", "CREATE", str(route.stream),
                                 self._settings.group(route), "$", "MKSTREAM",
                                 timeout=self._settings.timeout)
        except _RespError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise
        self._groups.add(id(route))

    async def fetch(self, route: BridgeInbound, limit: int, wait_s: float) -> list[Received]:
        await self._group(route)
        s, key = self._settings, id(route)
        stream, group = str(route.stream), s.group(route)
        # First what this consumer was given and did not acknowledge (a reconnect).
        if key not in self._backlog:
            got = self._entries(route, await self._c().call(
                "XREADGROUP", "GROUP", group, s.consumer, "COUNT", limit, "STREAMS", stream,
                "0", timeout=s.timeout))
            if got:
                return got
            self._backlog.add(key)
        # Then what another consumer left unacknowledged for long enough (a host gone).
        now = time.monotonic()
        every = s.config.redeliver_after_s / 2
        if now - self._claimed_at.get(key, 0.0) >= every:
            self._claimed_at[key] = now
            reply = await self._c().call(
                "XAUTOCLAIM", stream, group, s.consumer,
                int(s.config.redeliver_after_s * 1000), "0-0", "COUNT", limit,
                timeout=s.timeout)
            got = self._batch(route, reply[1] if isinstance(reply, list) else [])
            if got:
                self._claimed_at[key] = 0.0  # more may wait: claim again next time
                return got
        reply = await self._c().call(
            "XREADGROUP", "GROUP", group, s.consumer, "COUNT", limit, "BLOCK",
            max(1, int(wait_s * 1000)), "STREAMS", stream, ">", timeout=wait_s + s.timeout)
        return self._entries(route, reply)

    def _entries(self, route: BridgeInbound, reply: Any) -> list[Received]:
        if not reply:
            return []
        return self._batch(route, reply[0][1])

    def _batch(self, route: BridgeInbound, entries: list[Any]) -> list[Received]:
        out = []
        for entry in entries or []:
            entry_id, fields = entry[0].decode(), entry[1]
            mid = f"{route.stream}:{entry_id}"
            if not fields:  # deleted while pending: nothing to deliver (XAUTOCLAIM drops it)
                continue
            pairs = dict(zip(fields[::2], fields[1::2], strict=False))
            data = pairs.get(b"data")
            if isinstance(data, _TooLarge):
                out.append(Received(mid, b"", entry_id, too_large=data.size))
            elif isinstance(data, bytes):
                out.append(Received(mid, data, entry_id))
            else:
                text = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace")
                        if isinstance(v, bytes) else None for k, v in pairs.items()}
                out.append(Received(mid, json.dumps(text).encode(), entry_id))
        return out

    async def ack(self, route: BridgeInbound, message: Received) -> None:
        await self._c().call("XACK", str(route.stream), self._settings.group(route),
                             message.token, timeout=self._settings.timeout)

    async def publish(self, route: BridgeOutbound, message_id: str, event: str,
                      data: bytes, headers: Mapping[str, str] | None = None) -> str:
        trim: tuple[str | int, ...] = ()
        if route.max_len is not None:
            trim = ("MAXLEN", "~", route.max_len)
        extra = [part for k, v in (headers or {}).items() for part in (k, v)]
        reply = await self._c().call("EVAL", _ADD_ONCE, 1, str(route.stream), DEDUPE_WINDOW,
                                     message_id, *trim, "*", "data", data, "event", event,
                                     "id", message_id, *extra,
                                     timeout=self._settings.timeout)
        return reply.decode() if isinstance(reply, bytes) else str(reply)
