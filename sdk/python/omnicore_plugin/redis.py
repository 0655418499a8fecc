"""Redis through a connector the operator declared and granted (``omnicore:redis``; grant
``redis: {connectors: [cache]}``, specs/abi.md §4.11).

    from omnicore_plugin import redis

    cache = redis.connect("cache")
    if cache.incr("hits") == 1:
        cache.expire("hits", 60)
    cache.set("greeting", "hi", ex=300)

Every key and PUBLISH channel is under the plugin's prefix: the host prepends the
connector's ``key_prefix`` (default ``omnicore:{plugin}:``), so a plugin never names a key
outside it. Replies: None, int, str (bytes when not UTF-8), lists and dicts (HGETALL).
Refusals raise :class:`~omnicore_plugin.HostError` with ``code`` ``DENIED`` (a command
outside §4.11's list), ``INVALID`` (Redis's own error, such as WRONGTYPE), ``UNAVAILABLE``
or ``TOO_LARGE``.
"""

from __future__ import annotations

import base64
import builtins
import json
from typing import Any

from omnicore_plugin._binding import Binding
from omnicore_plugin._errors import HostError

__all__ = ["Redis", "connect"]

_host = Binding("redis")


def _arg(value: Any, i: int) -> Any:
    if isinstance(value, (str, int)) and not isinstance(value, bool):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    raise HostError("INVALID", "redis", f"args[{i}] must be a str, an int or bytes")


def _reply(value: Any) -> Any:
    if isinstance(value, list):
        return [_reply(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1 and isinstance(value.get("$bytes"), str):
            return base64.b64decode(value["$bytes"])
        return {k: _reply(v) for k, v in value.items()}
    return value


class Redis:
    """A Redis connector the operator granted, by name."""

    def __init__(self, name: str) -> None:
        self.name = name

    def command(self, cmd: str, *args: Any) -> Any:
        """Run any command of §4.11 with its arguments; the reply."""
        req = json.dumps({"cmd": cmd, "args": [_arg(a, i) for i, a in enumerate(args)]})
        return _reply(json.loads(_host.call("command", self.name, req)))

    def get(self, key: str) -> str | bytes | None:
        return self.command("GET", key)  # type: ignore[no-any-return]

    def set(self, key: str, value: str | bytes | int, *, ex: int | None = None) -> None:
        """SET, with ``ex`` seconds to live."""
        if ex is None:
            self.command("SET", key, value)
        else:
            self.command("SET", key, value, "EX", ex)

    def incr(self, key: str) -> int:
        return int(self.command("INCR", key))

    def incrby(self, key: str, delta: int) -> int:
        return int(self.command("INCRBY", key, delta))

    def expire(self, key: str, seconds: int) -> bool:
        """Whether the key exists and now expires."""
        return bool(self.command("EXPIRE", key, seconds) == 1)

    def ttl(self, key: str) -> int:
        """Seconds left: -1 without expiry, -2 for an absent key."""
        return int(self.command("TTL", key))

    def delete(self, *keys: str) -> int:
        """DEL: how many of ``keys`` existed."""
        return int(self.command("DEL", *keys))

    def hget(self, key: str, field: str) -> str | bytes | None:
        return self.command("HGET", key, field)  # type: ignore[no-any-return]

    def hset(self, key: str, field: str, value: str | bytes | int) -> int:
        return int(self.command("HSET", key, field, value))

    def hgetall(self, key: str) -> dict[str, str | bytes]:
        return dict(self.command("HGETALL", key))

    def lpush(self, key: str, *values: str | bytes | int) -> int:
        return int(self.command("LPUSH", key, *values))

    def rpush(self, key: str, *values: str | bytes | int) -> int:
        return int(self.command("RPUSH", key, *values))

    def lrange(self, key: str, start: int, stop: int) -> list[str | bytes]:
        return list(self.command("LRANGE", key, start, stop))

    def sadd(self, key: str, *members: str | bytes | int) -> int:
        return int(self.command("SADD", key, *members))

    def srem(self, key: str, *members: str | bytes | int) -> int:
        return int(self.command("SREM", key, *members))

    def smembers(self, key: str) -> builtins.set[str | bytes]:
        return builtins.set(self.command("SMEMBERS", key))

    def publish(self, channel: str, message: str | bytes) -> int:
        return int(self.command("PUBLISH", channel, message))


def connect(name: str) -> Redis:
    """A handle on the connector ``name``."""
    return Redis(name)
