"""``omnicore:testing``: what a test program asks of its host besides a plugin's capabilities.

Set up the running test's host (config, secrets, log level, the next HTTP and SQL answers, a SQL
connector's kind, the Redis prefix), read back what the plugin did (log lines, kv keys, events
published, tasks, SQL statements, Redis keys), and the Redis helpers C's and Zig's tests use.
Variable-size answers are §3.2 reads (``out, cap -> length``, read again when they did not
fit), so a test program's exports are never called. JSON answers carry bytes as base64.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import wasmtime

from omnicore.sandbox.fastcall import GuestMemory, RawInstance
from omnicore.sandbox.hostfunc import define_host_function
from omnicore.sandbox.logring import LEVELS, level_number
from omnicore.toolchains.testhost.host import Current

__all__ = ["NAMESPACE", "define_testing"]

NAMESPACE = "omnicore:testing"
_INVALID = -3


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _json(value: Any) -> bytes:
    def default(v: Any) -> Any:
        if isinstance(v, bytes):
            return {"$bytes": _b64(v)}
        raise TypeError(type(v).__name__)

    return json.dumps(value, separators=(",", ":"), default=default).encode()


def _reader(answer: Callable[[Current], Any]) -> Callable[..., int]:
    """A §3.2 read of ``answer(current)`` as JSON."""
    def read(current: Current, mem: GuestMemory, out: int, cap: int) -> int:
        return mem.write_result(_json(answer(current)), out, cap)

    return read


def _set_config(current: Current, mem: GuestMemory, ptr: int, length: int) -> int:
    try:
        value = json.loads(mem.read(ptr, length, "config"))
    except ValueError:
        return _INVALID
    if not isinstance(value, dict):
        return _INVALID
    host = current.host
    host.config = value
    host.rebind("config")
    return 0


def _log_level(current: Current, _mem: GuestMemory, level: int) -> None:
    current.host.log.min_level = max(0, min(level, len(LEVELS) - 1))


def _secret(current: Current, mem: GuestMemory, np: int, nl: int, vp: int, vl: int,
            present: int) -> None:
    host = current.host
    name = mem.read_str(np, nl, "secret name")
    host.secrets.values[name] = mem.read(vp, vl, "secret") if present else None
    host.grants["secrets"] = {"expose": sorted(host.secrets.values)}
    host.rebind("secrets")


def _http_answer(current: Current, mem: GuestMemory, hp: int, hl: int, bp: int, bl: int,
                 failed: int) -> None:
    current.host.answers.http = (mem.read(hp, hl, "answer"), mem.read(bp, bl, "body"),
                                 bool(failed))


def _sql_answer(current: Current, mem: GuestMemory, ptr: int, length: int,
                failed: int) -> None:
    current.host.answers.sql = (mem.read_str(ptr, length, "answer"), bool(failed))


def _sql_kind(current: Current, mem: GuestMemory, np: int, nl: int, kp: int, kl: int) -> int:
    # The connector's kind, as the operator's config gives it: whose grammar judges statements.
    try:
        current.host.databases.set_kind(mem.read_str(np, nl, "connector"),
                                        mem.read_str(kp, kl, "kind"))
    except ValueError:
        return _INVALID
    return 0


def _redis_prefix(current: Current, mem: GuestMemory, ptr: int, length: int) -> None:
    current.host.redis_prefix = mem.read_str(ptr, length, "prefix")


def _kv(current: Current) -> dict[str, str]:
    host = current.host
    store = host.storage.kv(host.owner)
    return {key: _b64(store.get(key) or b"") for key in store.list("")}


def _redis_keys(current: Current) -> list[str]:
    host = current.host
    return sorted(host.redis_prefix + key.decode("utf-8", "replace")
                  for key in host.databases.redis.data)


def _redis_published(current: Current) -> list[list[str]]:
    host = current.host
    return [[host.redis_prefix + channel.decode("utf-8", "replace"), _b64(message)]
            for channel, message in host.databases.redis.published]


def _redis_value(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, dict):
        return {_redis_value(k): _redis_value(v) for k, v in value.items()}
    if isinstance(value, (set, frozenset)):
        return sorted(_redis_value(v) for v in value)
    if isinstance(value, list):
        return [_redis_value(v) for v in value]
    return value


def _redis_data(current: Current) -> dict[str, Any]:
    """Ruby's TestHost#redis and #redis_ttl: every key as the host names it, its value (a
    string, hash, list, or set as a sorted list) and its TTL in seconds, if it has one."""
    host = current.host
    redis = host.databases.redis
    data = {host.redis_prefix + _redis_value(k): _redis_value(v) for k, v in redis.data.items()}
    ttl = {host.redis_prefix + _redis_value(k): redis.ttl(k) for k in redis.ttl_ms}
    return {"data": data, "ttl": ttl}


def _statements(current: Current) -> list[list[Any]]:
    return current.host.databases.statements


# C's test host (sdk/c/omnicore_test.h) sets and reads one item at a time: no JSON in C.
def _config_key(current: Current, mem: GuestMemory, kp: int, kl: int, vp: int, vl: int) -> None:
    """Config ``key`` (a dotted path, as the plugin reads it) set to the text ``value``."""
    host = current.host
    *parents, last = mem.read_str(kp, kl, "key").split(".")
    section = host.config
    for part in parents:
        inner = section.get(part)
        if not isinstance(inner, dict):  # new, or a value where the path goes on: replaced
            inner = section[part] = {}
        section = inner
    section[last] = mem.read_str(vp, vl, "value")
    host.rebind("config")


def _kv_set(current: Current, mem: GuestMemory, kp: int, kl: int, vp: int, vl: int) -> None:
    host = current.host
    host.storage.kv(host.owner).set(mem.read_str(kp, kl, "key"), mem.read(vp, vl, "value"))


def _kv_get(current: Current, mem: GuestMemory, kp: int, kl: int, out: int, cap: int) -> int:
    host = current.host
    value = host.storage.kv(host.owner).get(mem.read_str(kp, kl, "key"))
    return -1 if value is None else mem.write_result(value, out, cap)


def _log_count(current: Current, _mem: GuestMemory) -> int:
    return len(current.host.log.lines())


def _log_line(current: Current, mem: GuestMemory, i: int, out: int, cap: int) -> int:
    lines = current.host.log.lines()
    if not 0 <= i < len(lines):
        return -1
    line = lines[i]
    return mem.write_result(f"{line.level.upper()} {line.message}".encode(), out, cap)


def _event_count(current: Current, _mem: GuestMemory) -> int:
    return len(current.host.subscriptions.published)


def _event(part: int) -> Callable[..., int]:
    def read(current: Current, mem: GuestMemory, i: int, out: int, cap: int) -> int:
        published = current.host.subscriptions.published
        if not 0 <= i < len(published):
            return -1
        item = published[i][part]
        return mem.write_result(item.encode() if isinstance(item, str) else item, out, cap)

    return read


def _redis_get(current: Current, mem: GuestMemory, kp: int, kl: int, out: int, cap: int) -> int:
    value = current.host.databases.redis.value(mem.read(kp, kl, "key"))
    return -1 if value is None else mem.write_result(value, out, cap)


def _redis_ttl(current: Current, mem: GuestMemory, kp: int, kl: int) -> int:
    return current.host.databases.redis.ttl(mem.read(kp, kl, "key"))


def _redis_set(current: Current, mem: GuestMemory, kp: int, kl: int, vp: int, vl: int) -> None:
    current.host.databases.redis.put(mem.read(kp, kl, "key"), mem.read(vp, vl, "value"))


def _redis_reset(current: Current, _mem: GuestMemory) -> None:
    current.host.databases.redis.clear()


def _reset(current: Current, _mem: GuestMemory) -> None:
    current.host = current.make()


_P = "ptr"
_FUNCTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...], Callable[..., Any]]] = {
    "reset": ((), (), _reset),
    "set_config": ((_P, _P), ("i32",), _set_config),
    "set_log_level": (("i32",), (), _log_level),
    "set_secret": ((_P, _P, _P, _P, "i32"), (), _secret),
    "http_answer": ((_P, _P, _P, _P, "i32"), (), _http_answer),
    "sql_answer": ((_P, _P, "i32"), (), _sql_answer),
    "sql_kind": ((_P, _P, _P, _P), ("i32",), _sql_kind),
    "set_redis_prefix": ((_P, _P), (), _redis_prefix),
    "logs": ((_P, _P), ("i32",), _reader(
        lambda c: [[level_number(line.level), line.message] for line in c.host.log.lines()])),
    "kv": ((_P, _P), ("i32",), _reader(_kv)),
    "events": ((_P, _P), ("i32",), _reader(
        lambda c: [[topic, _b64(payload)] for topic, payload in c.host.subscriptions.published])),
    "tasks": ((_P, _P), ("i32",), _reader(
        lambda c: [[i, h, _b64(p), d, x] for i, h, p, d, x in c.host.jobs.jobs])),
    "sql_statements": ((_P, _P), ("i32",), _reader(_statements)),
    "redis_keys": ((_P, _P), ("i32",), _reader(_redis_keys)),
    "redis_published": ((_P, _P), ("i32",), _reader(_redis_published)),
    "redis_data": ((_P, _P), ("i32",), _reader(_redis_data)),
    "config_set": ((_P, _P, _P, _P), (), _config_key),
    "kv_set": ((_P, _P, _P, _P), (), _kv_set),
    "kv_get": ((_P, _P, _P, _P), ("i32",), _kv_get),
    "log_count": ((), ("i32",), _log_count),
    "log_line": (("i32", _P, _P), ("i32",), _log_line),
    "event_count": ((), ("i32",), _event_count),
    "event_topic": (("i32", _P, _P), ("i32",), _event(0)),
    "event_payload": (("i32", _P, _P), ("i32",), _event(1)),
    "redis_get": ((_P, _P, _P, _P), ("i32",), _redis_get),
    "redis_ttl": ((_P, _P), ("i64",), _redis_ttl),
    "redis_set": ((_P, _P, _P, _P), (), _redis_set),
    "redis_reset": ((), (), _redis_reset),
}


def define_testing(linker: wasmtime.Linker, current: Current, live: dict[int, RawInstance],
                   keepalive: list[Any]) -> None:
    """Define ``omnicore:testing`` in ``linker`` for the running test (``current.host``)."""
    for name, (params, results, impl) in _FUNCTIONS.items():
        define_host_function(linker, NAMESPACE, name, params, results, impl, current, live,
                             keepalive)
