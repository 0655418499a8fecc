"""An in-memory Redis for ``omnicore test``: the host's commands (``omnicore:redis``,
specs/abi.md §4.11) answered as a real server answers them through the host, written once in
Python for every test runner that can serve a plugin's imports from Python (C's, whose test
program runs in wasmtime here).

What it answers is the case table every test host is held to (``sdk/contract/host.json``:
the command list, argument counts, replies and refusals); tests/sdk/test_contract_fakes.py
holds it there. Keys are as the plugin names them (the host's prefix is the plugin's own and
invisible to it); the clock does not move (a time to live stays as set).
"""

from __future__ import annotations

import base64
import binascii
import json
from functools import cache
from typing import Any

from omnicore.toolchains import locations

__all__ = ["MemoryRedis", "commands"]

_WRONGTYPE = "INVALID: WRONGTYPE Operation against a key holding the wrong kind of value"
_NOT_INT = "INVALID: ERR value is not an integer or out of range"
_I64 = (-(2**63), 2**63 - 1)


@cache
def commands() -> dict[str, tuple[int, int | None]]:
    """The host's commands: name -> (least arguments, most or None), from the case table."""
    table = json.loads((locations.sdk_dir("contract") / "host.json").read_text())
    return {name: (least, most) for name, (least, most, _keys)
            in table["redis"]["commands"].items()}


class _Answer(Exception):  # a signal caught in command(), never seen outside
    """A refusal as command() answers it: its message starts with the status name, as the
    host's do."""


def _int(raw: bytes) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise _Answer(_NOT_INT) from None
    if not _I64[0] <= value <= _I64[1]:
        raise _Answer(_NOT_INT)
    return value


def _arg(value: Any, i: int) -> bytes:
    if type(value) is str:
        return value.encode("utf-8", "surrogatepass")
    if type(value) is int:
        return str(value).encode()
    if type(value) is dict and len(value) == 1 and isinstance(value.get("$bytes"), str):
        try:
            return base64.b64decode(value["$bytes"], validate=True)
        except binascii.Error:
            raise _Answer(f"INVALID: args[{i}]: bad $bytes") from None
    raise _Answer(f"INVALID: args[{i}]: a string, an integer or {{\"$bytes\": ...}}")


def _json(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return {"$bytes": base64.b64encode(value).decode()}
    if isinstance(value, list):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k.decode("utf-8", "replace"): _json(v) for k, v in value.items()}
    return value


def _key(text: str | bytes) -> bytes:
    return text.encode() if isinstance(text, str) else text


class MemoryRedis:
    """The keys of one test: ``data`` (key -> bytes, dict, list or set) and ``ttl_ms``."""

    def __init__(self) -> None:
        self.data: dict[bytes, Any] = {}
        self.ttl_ms: dict[bytes, int] = {}
        #: ``(channel, message)`` of each PUBLISH, channels as the plugin names them: what
        #: a test checks a plugin announced (no subscriber listens in a test).
        self.published: list[tuple[bytes, bytes]] = []

    def command(self, request: bytes) -> tuple[bool, bytes]:
        """A plugin's ``{"cmd", "args"}``: (failed, the §3.3 block: the reply's JSON or the
        refusal's message)."""
        try:
            return False, json.dumps(_json(self._command(request)),
                                     separators=(",", ":")).encode()
        except _Answer as exc:
            return True, str(exc).encode()

    def _command(self, request: bytes) -> Any:
        try:
            req = json.loads(request)
        except ValueError:
            raise _Answer("INVALID: the request is not JSON") from None
        if not isinstance(req, dict):
            raise _Answer("INVALID: the request must be a JSON object")
        cmd = req.get("cmd")
        if not isinstance(cmd, str) or cmd.upper() not in commands():
            raise _Answer(f"DENIED: redis command {str(cmd)[:40]!r} is not allowed")
        name = cmd.upper()
        args = req.get("args") if req.get("args") is not None else []
        if not isinstance(args, list):
            raise _Answer("INVALID: args must be an array")
        least, most = commands()[name]
        if len(args) < least or (most is not None and len(args) > most):
            counts = (f"{least}" if most == least else f"{least} to {most}" if most
                      else f"{least} or more")
            raise _Answer(f"INVALID: {name} takes {counts} arguments, got {len(args)}")
        raw = [_arg(a, i) for i, a in enumerate(args)]
        return getattr(self, f"_{name.lower()}")(*raw)

    # -- what a test sets and reads -----------------------------------------------------------

    # A test names keys as the plugin does, as text or bytes (``host.redis.value("hits")``).

    def value(self, key: str | bytes) -> bytes | None:
        """The string at ``key`` (None: no key, or a hash, list or set)."""
        value = self.data.get(_key(key))
        return value if isinstance(value, bytes) else None

    def ttl(self, key: str | bytes) -> int:
        """``TTL key``: seconds to live, -1 for none, -2 for no key."""
        return self._ttl(_key(key))

    def put(self, key: str | bytes, value: str | bytes) -> None:
        """``SET key value``."""
        self._set(_key(key), _key(value))

    def clear(self) -> None:
        """Every key gone (a new test)."""
        self.data.clear()
        self.published.clear()
        self.ttl_ms.clear()

    # -- helpers ------------------------------------------------------------------------------

    def _typed(self, key: bytes, kind: type) -> Any:
        value = self.data.get(key)
        if value is not None and not isinstance(value, kind):
            raise _Answer(_WRONGTYPE)
        return value

    def _keep(self, key: bytes, value: Any) -> None:
        """Store ``value`` at ``key``; an empty collection removes the key, as Redis does."""
        if value is None or (not isinstance(value, bytes) and not value):
            self.data.pop(key, None)
            self.ttl_ms.pop(key, None)
        else:
            self.data[key] = value

    # -- strings and counters -----------------------------------------------------------------

    def _get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._typed(key, bytes)
        return value

    def _getdel(self, key: bytes) -> bytes | None:
        value = self._get(key)
        self._keep(key, None)
        return value

    def _set(self, key: bytes, value: bytes, *options: bytes) -> str | None:
        nx = xx = keep = False
        ttl: int | None = None
        i = 0
        while i < len(options):
            flag = options[i].upper()
            if flag in (b"EX", b"PX") and i + 1 < len(options):
                n = _int(options[i + 1])
                if n <= 0:
                    raise _Answer("INVALID: ERR invalid expire time in 'set' command")
                ttl = n * 1000 if flag == b"EX" else n
                i += 2
            elif flag in (b"NX", b"XX", b"KEEPTTL"):
                nx, xx, keep = nx or flag == b"NX", xx or flag == b"XX", keep or flag == b"KEEPTTL"
                i += 1
            else:
                raise _Answer("INVALID: SET takes EX n, PX n, NX, XX or KEEPTTL")
        if (nx and key in self.data) or (xx and key not in self.data):
            return None
        self.data[key] = value
        if ttl is not None:
            self.ttl_ms[key] = ttl
        elif not keep:
            self.ttl_ms.pop(key, None)
        return "OK"

    def _setnx(self, key: bytes, value: bytes) -> int:
        return int(self._set(key, value, b"NX") is not None)

    def _mget(self, *keys: bytes) -> list[bytes | None]:
        return [v if isinstance(v := self.data.get(k), bytes) else None for k in keys]

    def _del(self, *keys: bytes) -> int:
        gone = 0
        for key in keys:
            if key in self.data:
                self._keep(key, None)
                gone += 1
        return gone

    def _exists(self, *keys: bytes) -> int:
        return sum(key in self.data for key in keys)

    def _add(self, key: bytes, by: int) -> int:
        value = _int(self._get(key) or b"0") + by
        if not _I64[0] <= value <= _I64[1]:
            raise _Answer("INVALID: ERR increment or decrement would overflow")
        self.data[key] = str(value).encode()
        return value

    def _incr(self, key: bytes) -> int:
        return self._add(key, 1)

    def _decr(self, key: bytes) -> int:
        return self._add(key, -1)

    def _incrby(self, key: bytes, by: bytes) -> int:
        return self._add(key, _int(by))

    def _decrby(self, key: bytes, by: bytes) -> int:
        return self._add(key, -_int(by))

    # -- expiry (the clock does not move) -----------------------------------------------------

    def _expire_ms(self, key: bytes, ms: int) -> int:
        if key not in self.data:
            return 0
        if ms <= 0:
            self._keep(key, None)
        else:
            self.ttl_ms[key] = ms
        return 1

    def _expire(self, key: bytes, seconds: bytes) -> int:
        return self._expire_ms(key, _int(seconds) * 1000)

    def _pexpire(self, key: bytes, ms: bytes) -> int:
        return self._expire_ms(key, _int(ms))

    def _pttl(self, key: bytes) -> int:
        if key not in self.data:
            return -2
        return self.ttl_ms.get(key, -1)

    def _ttl(self, key: bytes) -> int:
        ms = self._pttl(key)
        return ms if ms < 0 else (ms + 500) // 1000  # Redis rounds to the nearest second

    def _persist(self, key: bytes) -> int:
        return int(key in self.data and self.ttl_ms.pop(key, None) is not None)

    def _publish(self, channel: bytes, message: bytes) -> int:
        self.published.append((channel, message))
        return 0  # no subscriber listens in a test

    # -- hashes -------------------------------------------------------------------------------

    def _hash(self, key: bytes) -> dict[bytes, bytes]:
        value: dict[bytes, bytes] = self._typed(key, dict) or {}
        return value

    def _hget(self, key: bytes, field: bytes) -> bytes | None:
        return self._hash(key).get(field)

    def _hset(self, key: bytes, *pairs: bytes) -> int:
        if len(pairs) % 2:
            raise _Answer("INVALID: ERR wrong number of arguments for 'hset' command")
        h = self._hash(key)
        new = 0
        for field, value in zip(pairs[::2], pairs[1::2], strict=True):
            new += field not in h
            h[field] = value
        self._keep(key, h)
        return new

    def _hdel(self, key: bytes, *fields: bytes) -> int:
        h = self._hash(key)
        gone = sum(h.pop(f, None) is not None for f in fields)
        self._keep(key, h)
        return gone

    def _hgetall(self, key: bytes) -> dict[bytes, bytes]:
        return dict(self._hash(key))

    def _hincrby(self, key: bytes, field: bytes, by: bytes) -> int:
        h = self._hash(key)
        value = _int(h.get(field, b"0")) + _int(by)
        h[field] = str(value).encode()
        self._keep(key, h)
        return value

    def _hexists(self, key: bytes, field: bytes) -> int:
        return int(field in self._hash(key))

    def _hlen(self, key: bytes) -> int:
        return len(self._hash(key))

    # -- lists --------------------------------------------------------------------------------

    def _list(self, key: bytes) -> list[bytes]:
        value: list[bytes] = self._typed(key, list) or []
        return value

    def _lpush(self, key: bytes, *values: bytes) -> int:
        items = self._list(key)
        for value in values:
            items.insert(0, value)
        self._keep(key, items)
        return len(items)

    def _rpush(self, key: bytes, *values: bytes) -> int:
        items = self._list(key)
        items.extend(values)
        self._keep(key, items)
        return len(items)

    def _pop(self, key: bytes, count: bytes | None, left: bool) -> Any:
        items = self._list(key)
        n = None if count is None else _int(count)
        if n is not None and n < 0:
            raise _Answer("INVALID: ERR value is out of range, must be positive")
        if key not in self.data:
            return None
        taken = items[:1 if n is None else n] if left else items[::-1][:1 if n is None else n]
        if left:
            del items[:len(taken)]
        else:
            del items[len(items) - len(taken):]
        self._keep(key, items)
        if n is None:
            return taken[0]
        return taken

    def _lpop(self, key: bytes, count: bytes | None = None) -> Any:
        return self._pop(key, count, True)

    def _rpop(self, key: bytes, count: bytes | None = None) -> Any:
        return self._pop(key, count, False)

    def _span(self, key: bytes, start: bytes, stop: bytes) -> tuple[list[bytes], int, int]:
        items = self._list(key)
        n = len(items)
        first, last = (i + n if i < 0 else i for i in (_int(start), _int(stop)))
        return items, max(first, 0), min(last, n - 1)

    def _lrange(self, key: bytes, start: bytes, stop: bytes) -> list[bytes]:
        items, first, last = self._span(key, start, stop)
        return items[first:last + 1]

    def _ltrim(self, key: bytes, start: bytes, stop: bytes) -> str:
        items, first, last = self._span(key, start, stop)
        items[:] = items[first:last + 1]
        self._keep(key, items)
        return "OK"

    def _llen(self, key: bytes) -> int:
        return len(self._list(key))

    # -- sets ---------------------------------------------------------------------------------

    def _members(self, key: bytes) -> set[bytes]:
        value: set[bytes] = self._typed(key, set) or set()
        return value

    def _sadd(self, key: bytes, *members: bytes) -> int:
        s = self._members(key)
        new = len(set(members) - s)
        s.update(members)
        self._keep(key, s)
        return new

    def _srem(self, key: bytes, *members: bytes) -> int:
        s = self._members(key)
        gone = len(set(members) & s)
        s.difference_update(members)
        self._keep(key, s)
        return gone

    def _smembers(self, key: bytes) -> list[bytes]:
        return sorted(self._members(key))  # a real server's order is its own: sorted here

    def _sismember(self, key: bytes, member: bytes) -> int:
        return int(member in self._members(key))

    def _scard(self, key: bytes) -> int:
        return len(self._members(key))
