"""omnicore:redis (specs/abi.md §4.11) on a real redis-server with a password
(tests/dbservers.py): the allowed commands, the key prefix the host enforces, bounded
replies, one-line failures."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.db_fixtures import (  # noqa: F401 - fixtures
    REDIS_WAT,
    Db,
    check_denied_and_down,
    framed,
    on_threads,
    redis_server,
    sql_app,
)
from tests.dbservers import Redis, free_port


def connectors(server: Redis, **extra: Any) -> dict[str, Any]:
    return {"cache": {"kind": "redis", "url": f"redis://127.0.0.1:{server.port}/0",
                      "secret": "cache-pw", **extra}}


def load(sql_app: Callable[..., Db], server: Redis, name: str = "counter",  # noqa: F811
         **extra: Any) -> Db:
    return sql_app(connectors(server, **extra), {"redis": {"connectors": ["cache"]}},
                   name=name, wat=REDIS_WAT, secrets={"cache-pw": server.password})


def test_strings_counters_expiry_hashes_lists_sets(sql_app: Callable[..., Db],  # noqa: F811
                                                   redis_server: Redis) -> None:  # noqa: F811
    r = load(sql_app, redis_server)
    assert r.command("cache", "SET", "greeting", "hello", "EX", 60) == "OK"
    assert r.command("cache", "GET", "greeting") == "hello"
    assert r.command("cache", "INCRBY", "visits", 5) == 5
    assert r.command("cache", "INCR", "visits") == 6
    assert 0 < r.command("cache", "TTL", "greeting") <= 60
    assert r.command("cache", "HSET", "h", "a", "1", "b", "2") == 2
    assert r.command("cache", "HGETALL", "h") == {"a": "1", "b": "2"}
    assert r.command("cache", "RPUSH", "l", "x", "y", "z") == 3
    assert r.command("cache", "LRANGE", "l", 0, -1) == ["x", "y", "z"]
    assert r.command("cache", "SADD", "s", "m") == 1
    assert r.command("cache", "SMEMBERS", "s") == ["m"]
    assert r.command("cache", "SET", "raw", {"$bytes": "/wA="}) == "OK"
    assert r.command("cache", "GET", "raw") == {"$bytes": "/wA="}
    assert r.command("cache", "GET", "absent") is None
    assert r.command("cache", "MGET", "greeting", "absent") == ["hello", None]
    assert r.command("cache", "PUBLISH", "news", "hi") == 0
    # The keys are under the plugin's prefix, as redis-py sees them.
    client = redis_server.client()
    assert client.get("omnicore:counter:visits") == b"6"


def test_the_key_prefix_cannot_be_escaped(sql_app: Callable[..., Db],  # noqa: F811
                                          redis_server: Redis) -> None:  # noqa: F811
    client = redis_server.client()
    client.set("omnicore:victim:secret", "theirs")
    r = load(sql_app, redis_server, name="mallory")
    for key in ("omnicore:victim:secret", "../victim:secret", "../../omnicore:victim:secret",
                "\x00omnicore:victim:secret"):
        assert r.command("cache", "GET", key) is None
        assert r.command("cache", "SET", key, "mine") == "OK"
    assert r.command("cache", "DEL", "omnicore:victim:secret", "x") == 1  # its own copy
    assert client.get("omnicore:victim:secret") == b"theirs"
    assert set(client.keys("omnicore:mallory:*")) >= {b"omnicore:mallory:../victim:secret"}


def test_only_the_listed_commands_exist(sql_app: Callable[..., Db],  # noqa: F811
                                        redis_server: Redis) -> None:  # noqa: F811
    r = load(sql_app, redis_server)
    for cmd in ("KEYS", "FLUSHALL", "EVAL", "CONFIG", "SCAN", "AUTH", "SELECT", "RENAME"):
        assert r.refused("command", framed("cache", json.dumps(
            {"cmd": cmd, "args": ["*"]}).encode())).startswith(f"DENIED: redis command '{cmd}'")
    assert r.refused("command", framed("cache", b'{"cmd": "SET", "args": ["k", "v", "GET"]}')) \
        == "INVALID: SET takes EX n, PX n, NX, XX or KEEPTTL"
    assert r.refused("command", framed("cache", b'{"cmd": "GET", "args": [1.5]}')).startswith(
        "INVALID: args[0]:")
    r.command("cache", "SET", "str", "x")
    assert r.refused("command", framed("cache", b'{"cmd": "LPUSH", "args": ["str", "y"]}')) \
        .startswith("INVALID: connector cache: WRONGTYPE")


def test_replies_are_bounded(sql_app: Callable[..., Db],  # noqa: F811
                             redis_server: Redis) -> None:  # noqa: F811
    r = load(sql_app, redis_server, max_rows=100, max_result_bytes=10_000)
    client = redis_server.client()
    client.set("omnicore:counter:big", b"x" * 50_000)
    client.rpush("omnicore:counter:long", *range(500))
    client.sadd("omnicore:counter:wide", *range(500))
    client.hset("omnicore:counter:hash", mapping={str(i): i for i in range(500)})
    for cmd, args in (("GET", ["big"]), ("LRANGE", ["long", 0, -1]), ("SMEMBERS", ["wide"]),
                      ("HGETALL", ["hash"]), ("MGET", ["big", "big"])):
        msg = r.refused("command", framed("cache", json.dumps({"cmd": cmd,
                                                               "args": args}).encode()))
        assert msg.startswith("TOO_LARGE:") and "connector cache" in msg, (cmd, msg)
    assert r.command("cache", "LRANGE", "long", 0, 9) == [str(i) for i in range(10)]
    assert r.command("cache", "GET", "absent") is None  # the connection serves on


def test_wrong_password_and_a_server_that_is_down(sql_app: Callable[..., Db],  # noqa: F811
                                                  redis_server: Redis,  # noqa: F811
                                                  caplog: pytest.LogCaptureFixture) -> None:
    wrong = "wrong-Secret-24680"
    conns = {**connectors(redis_server),
             "gone": {"kind": "redis", "url": f"redis://127.0.0.1:{free_port()}/0"}}
    r = sql_app(conns, {"redis": {"connectors": ["cache", "gone"]}}, wat=REDIS_WAT,
                secrets={"cache-pw": wrong})
    check_denied_and_down(r, "command", b'{"cmd": "GET", "args": ["k"]}', "cache", wrong,
                          caplog.text)
    assert r.refused("command", framed("other", b'{"cmd": "GET", "args": ["k"]}')) == \
        "DENIED: connector other is not granted"


def test_the_pool_survives_a_restart_and_threads_share_it(
        sql_app: Callable[..., Db], redis_server: Redis) -> None:  # noqa: F811
    r = load(sql_app, redis_server)
    assert r.command("cache", "SET", "k", "1") == "OK"
    redis_server.halt()
    try:
        assert r.refused("command", framed("cache", b'{"cmd": "GET", "args": ["k"]}')) \
            .startswith("UNAVAILABLE: connector cache:")
    finally:
        redis_server.resume()
    assert r.command("cache", "GET", "k") is None   # no persistence: a fresh server

    def work() -> None:
        for _ in range(50):
            r.command("cache", "INCR", "n")

    assert on_threads(work) == [] and r.command("cache", "GET", "n") == "400"
    assert r.app.databases.describe()[0]["in_use"] == 0
