"""omnicore:redis (specs/abi.md §4.11) on a real redis-server with a password
(tests/dbservers.py) and on a lying fake one: the allowed commands, the key prefix the host
enforces, bounded replies (every element counted, nothing deleted that is then refused),
one-line failures."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from omnicore.egress.db.config import db_connector
from omnicore.egress.db.redis import COMMANDS, RedisBackend, _Budget
from omnicore.egress.refused import Refused
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


# Reviewed: each of these only reads or writes keys (under the plugin's prefix) and leaves
# nothing on the connection for the next caller: no selected database (SELECT), client name,
# tracking or reply mode (CLIENT, HELLO, RESET), queued transaction or watched key (MULTI,
# WATCH), subscription (SUBSCRIBE), script or function (EVAL, FUNCTION), no blocking
# (BLPOP). A command added to COMMANDS must be reviewed the same way and added here, or the
# pool's connections need a reset between plugins (specs/abi.md §4.11.1).
STATELESS = frozenset({
    "GET", "SET", "SETNX", "GETDEL", "MGET", "DEL", "EXISTS", "INCR", "INCRBY", "DECR",
    "DECRBY", "EXPIRE", "PEXPIRE", "TTL", "PTTL", "PERSIST", "HGET", "HSET", "HDEL", "HGETALL",
    "HINCRBY", "HEXISTS", "HLEN", "LPUSH", "RPUSH", "LPOP", "RPOP", "LRANGE", "LLEN", "LTRIM",
    "SADD", "SREM", "SMEMBERS", "SISMEMBER", "SCARD", "PUBLISH"})


def test_every_allowed_command_is_stateless() -> None:
    assert set(COMMANDS) <= STATELESS, sorted(set(COMMANDS) - STATELESS)


def refused(r: Db, cmd: str, *args: Any) -> str:
    return r.refused("command", framed("cache", json.dumps({"cmd": cmd,
                                                           "args": list(args)}).encode()))


def test_getdel_over_the_cap_is_refused_before_it_deletes(
        sql_app: Callable[..., Db], redis_server: Redis) -> None:  # noqa: F811
    r = load(sql_app, redis_server, max_result_bytes=10_000)
    client = redis_server.client()
    client.set("omnicore:counter:gd-big", b"x" * 10_001, ex=600)
    assert refused(r, "GETDEL", "gd-big") == (
        "TOO_LARGE: GETDEL would answer 10001 bytes, more than 10000 (connector cache, "
        "max_result_bytes): refused before it ran, the key is unchanged")
    assert client.get("omnicore:counter:gd-big") == b"x" * 10_001
    assert client.ttl("omnicore:counter:gd-big") > 590  # not rewritten either
    # At the cap exactly: the script's measure is the reader's, so it answers and deletes.
    client.set("omnicore:counter:gd-fits", b"y" * 10_000)
    assert r.command("cache", "GETDEL", "gd-fits") == "y" * 10_000
    assert client.exists("omnicore:counter:gd-fits") == 0
    assert r.command("cache", "GETDEL", "absent") is None
    client.rpush("omnicore:counter:gd-list", "a")
    msg = refused(r, "GETDEL", "gd-list")
    assert msg.startswith("INVALID: connector cache: WRONGTYPE") and "script" not in msg, msg
    # A refusal before the command ran leaves the connection clean: it serves on, unreplaced.
    backend = r.app.databases.backend("cache", ("redis",))
    assert backend.pool.idle == 1
    assert r.command("cache", "GET", "absent") is None and backend.pool.idle == 1


def test_pops_over_the_cap_are_refused_before_they_pop(
        sql_app: Callable[..., Db], redis_server: Redis) -> None:  # noqa: F811
    r = load(sql_app, redis_server, max_result_bytes=10_000, max_rows=100)
    client = redis_server.client()
    key = "omnicore:counter:pops"
    client.delete(key)
    # 10 elements of 999 bytes answer exactly 10,000 (each element one more, its separator).
    items = [bytes([97 + i]) * 999 for i in range(10)]
    client.rpush(key, *items, b"z" * 10_001)
    for cmd, args in (("LPOP", ["pops", 11]), ("RPOP", ["pops", 2]), ("RPOP", ["pops"]),
                      ("LPOP", ["pops", 100])):
        msg = refused(r, cmd, *args)
        assert msg.startswith(f"TOO_LARGE: {cmd} would answer ") and \
            msg.endswith("refused before it ran, the key is unchanged"), (cmd, args, msg)
        assert client.lrange(key, 0, -1) == [*items, b"z" * 10_001], (cmd, args)
    assert refused(r, "LPOP", "pops", 101) == "TOO_LARGE: count is over max_rows (100)"
    assert r.command("cache", "LPOP", "pops", " 10") == [i.decode() for i in items]
    assert client.lrange(key, 0, -1) == [b"z" * 10_001]
    client.rpush(key, "small")
    assert r.command("cache", "RPOP", "pops") == "small"
    assert r.command("cache", "LPOP", "pops", 0) == []
    assert refused(r, "LPOP", "pops", -1).startswith(
        "INVALID: connector cache: ERR value is out of range")
    assert refused(r, "LPOP", "pops").startswith("TOO_LARGE: LPOP would answer 10001 bytes")
    assert client.llen(key) == 1
    assert r.command("cache", "LPOP", "absent") is None
    assert r.command("cache", "RPOP", "absent", 3) is None


def test_every_reply_element_counts(sql_app: Callable[..., Db],  # noqa: F811
                                    redis_server: Redis) -> None:  # noqa: F811
    r = load(sql_app, redis_server, max_rows=100_000, max_result_bytes=10_000)
    # A nil is 4 bytes and each array element 1 more: 2,000 missing keys answer exactly the
    # cap, one more key is over it.
    assert r.command("cache", "MGET", *map(str, range(2000))) == [None] * 2000
    assert refused(r, "MGET", *map(str, range(2001))) == (
        "TOO_LARGE: the reply is larger than 10000 bytes (connector cache, max_result_bytes)")


def test_arguments_are_bounded_like_a_replys_items(
        sql_app: Callable[..., Db], redis_server: Redis) -> None:  # noqa: F811
    # A million keys are refused before a byte is sent (and before the host frames them).
    r = load(sql_app, redis_server)  # max_rows 10,000
    assert refused(r, "MGET", *map(str, range(1_000_000))) == (
        "TOO_LARGE: MGET of more than 10000 arguments (connector cache, max_rows)")
    assert refused(r, "RPUSH", "pushed", *map(str, range(10_000))) == (
        "TOO_LARGE: RPUSH of more than 10000 arguments (connector cache, max_rows)")
    assert redis_server.client().exists("omnicore:counter:pushed") == 0
    assert r.command("cache", "RPUSH", "pushed", *map(str, range(9_999))) == 9_999


def eval_reply(redis_server: Redis, script: str, **caps: Any) -> Any:  # noqa: F811
    """The reply of the host's own ``EVAL script 0`` read under ``caps`` (an EVAL of the host
    is the only way a real server answers nested arrays, which no allowed command does)."""
    connector = db_connector("cache", {"kind": "redis", "secret": "pw",
                                       "url": f"redis://127.0.0.1:{redis_server.port}/0",
                                       **caps})
    backend = RedisBackend(connector, lambda _: redis_server.password.encode())
    deadline = time.monotonic() + 5
    conn, _ = backend.pool.acquire(deadline, "test")
    try:
        conn.send([b"EVAL", script.encode(), b"0"], deadline)
        return conn.reply(_Budget(connector))
    except Refused:
        assert conn.broken  # the reply was left half read: the connection is not pooled
        raise
    finally:
        backend.pool.release(conn)
        backend.close()


def test_nested_arrays_integers_and_nils_count_on_a_real_server(
        redis_server: Redis) -> None:  # noqa: F811
    # 60 arrays of 2 are 180 items, though no one array is over 100.
    pairs = "local t = {} for i = 1, %d do t[i] = {1, 2} end return t"
    assert len(eval_reply(redis_server, pairs % 33, max_rows=100)) == 33
    with pytest.raises(Refused, match="the reply has more than 100 items"):
        eval_reply(redis_server, pairs % 60, max_rows=100)
    # Integers count their digits (and their separator).
    ints = "local t = {} for i = 1, 1000 do t[i] = 123456789 end return t"
    with pytest.raises(Refused, match="larger than 9999 bytes"):
        eval_reply(redis_server, ints, max_result_bytes=9_999)
    assert eval_reply(redis_server, ints, max_result_bytes=10_000) == [123456789] * 1000
    # Lua's false is a nil reply: 4 bytes and its separator.
    nils = "local t = {} for i = 1, 200 do t[i] = false end return t"
    with pytest.raises(Refused, match="larger than 999 bytes"):
        eval_reply(redis_server, nils, max_result_bytes=999)
    assert eval_reply(redis_server, nils, max_result_bytes=1000) == [None] * 200


class LyingServer:
    """A fake Redis that answers every command with ``reply``."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                while conn.recv(1 << 16):
                    conn.sendall(self.reply)
            except OSError:
                pass  # the host dropped the connection mid-reply

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize(("reply", "status"), [
    # 50 arrays of 50 integers: 2,550 items against max_rows 1,000.
    (b"*50\r\n" + (b"*50\r\n" + b":1\r\n" * 50) * 50, "TOO_LARGE: the reply has more than 1000"),
    # 900 nils against 4,000 bytes.
    (b"*900\r\n" + b"$-1\r\n" * 900, "TOO_LARGE: the reply is larger than 4000 bytes"),
    # Nested deeper than any command answers: off the stack, the connection dropped.
    (b"*1\r\n" * 100_000, "UNAVAILABLE: connector cache: connection lost"),
    # An error inside an array, the rest unread.
    (b"*2\r\n-ERR half\r\n:1\r\n", "INVALID: connector cache: ERR half"),
])
def test_a_lying_server_gets_a_status(sql_app: Callable[..., Db],  # noqa: F811
                                      reply: bytes, status: str) -> None:
    server = LyingServer(reply)
    try:
        r = sql_app({"cache": {"kind": "redis", "url": f"redis://127.0.0.1:{server.port}/0",
                               "max_rows": 1000, "max_result_bytes": 4000}},
                    {"redis": {"connectors": ["cache"]}}, name="counter", wat=REDIS_WAT)
        assert refused(r, "GET", "k").startswith(status)
        # Every one of them left the reply unread: the connection is not pooled again.
        assert r.app.databases.backend("cache", ("redis",)).pool.idle == 0
    finally:
        server.close()


def test_a_bad_url_secret_is_a_status(sql_app: Callable[..., Db]) -> None:  # noqa: F811
    r = sql_app({"cache": {"kind": "redis", "url_secret": "cache-url"}},
                {"redis": {"connectors": ["cache"]}}, name="counter", wat=REDIS_WAT,
                secrets={"cache-url": "http://user:hunter2-pw@host/0"})
    msg = refused(r, "GET", "k")
    assert msg == ("UNAVAILABLE: connector cache: secret cache-url does not hold a valid "
                   "redis URL") and "hunter2" not in msg


def test_a_user_without_eval_is_denied_the_pops_and_keeps_its_data(
        sql_app: Callable[..., Db], redis_server: Redis) -> None:  # noqa: F811
    client = redis_server.client()
    client.execute_command("ACL", "SETUSER", "noeval", "on", ">noeval-pw", "~*", "+@all",
                           "-eval")
    client.set("omnicore:counter:kept", "v")
    r = sql_app({"cache": {"kind": "redis", "secret": "noeval-pw",
                           "url": f"redis://noeval@127.0.0.1:{redis_server.port}/0"}},
                {"redis": {"connectors": ["cache"]}}, name="counter", wat=REDIS_WAT,
                secrets={"noeval-pw": "noeval-pw"})
    assert refused(r, "GETDEL", "kept").startswith("DENIED: connector cache: NOPERM")
    assert client.get("omnicore:counter:kept") == b"v"
    assert r.command("cache", "GET", "kept") == "v"
