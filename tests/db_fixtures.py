"""The plugins and servers the database connector tests share (``omnicore:sql``,
``omnicore:redis``; specs/abi.md §4.10-4.12).

The guests are WAT. ``sqlguest`` forwards its input to the host functions:

* ``query`` / ``execute``: input ``u32 conn_len | conn | request JSON``, the host's packed
  result returned as the handler's (a refusal is a GuestError whose message starts with
  the status name);
* ``txrun``: ``u32 conn_len | conn | u32 action | u32 hole | request``: ``begin``, the
  handle's digits written into the request at ``hole`` (spaces left there for them, after
  ``"tx":``), ``execute``, then by ``action``: 0 return without committing, 1 commit,
  2 roll back, 3 trap, 4 spin until the deadline;
* ``beginloop``: ``u32 conn_len | conn | u32 spin``: ``begin`` until it fails; the output is
  ``i32 count | i32 last status`` (with ``spin``, it spins until the deadline instead);
* ``querythenspin``: ``query``, then spin until the deadline (a statement whose call ends).

``redisguest``'s ``command`` forwards ``u32 conn_len | conn | request`` to
``omnicore:redis``'s ``command``.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from omnicore.app import OmniApp
from omnicore.errors import GuestError
from tests.dbservers import MariaDB, Redis
from tests.guest_wat import ALLOC, forward, plugin_wasm

__all__ = ["REDIS_WAT", "SQL_WAT", "Db", "check_denied_and_down", "maria", "on_threads",
           "redis_server", "sql_app", "sql_wasm"]

SQL_WAT = r"""
(module
  (import "omnicore:sql" "query" (func $query (param i32 i32 i32 i32) (result i64)))
  (import "omnicore:sql" "execute" (func $execute (param i32 i32 i32 i32) (result i64)))
  (import "omnicore:sql" "begin" (func $begin (param i32 i32) (result i64)))
  (import "omnicore:sql" "commit" (func $commit (param i64) (result i32)))
  (import "omnicore:sql" "rollback" (func $rollback (param i64) (result i32)))
  (memory (export "memory") 2)
""" + ALLOC + r"""
  ;; the decimal digits of v (>= 0) at $at
  (func $digits (param $v i64) (param $at i32)
    (local $t i64) (local $n i32)
    (local.set $t (local.get $v))
    (loop $count
      (local.set $n (i32.add (local.get $n) (i32.const 1)))
      (local.set $t (i64.div_u (local.get $t) (i64.const 10)))
      (br_if $count (i64.ne (local.get $t) (i64.const 0))))
    (loop $write
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (i32.store8 (i32.add (local.get $at) (local.get $n))
                  (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $v) (i64.const 10)))))
      (local.set $v (i64.div_u (local.get $v) (i64.const 10)))
      (br_if $write (i32.ne (local.get $n) (i32.const 0)))))
  ;; an error result "status:-N"
  (func $status (param $s i32) (result i64)
    (i64.store (i32.const 0x100) (i64.const 0x2d3a737574617473))  ;; "status:-"
    (call $digits (i64.extend_i32_u (i32.sub (i32.const 0) (local.get $s))) (i32.const 0x108))
    (i64.or (i64.shl (i64.const 0x100) (i64.const 32)) (i64.const 0x80000009)))
""" + forward("query", "query") + forward("execute", "execute") + forward(
    "querythenspin", "query", "(loop $l (br $l))\n    (i64.const 0)") + r"""
  (func (export "txrun") (param $p i32) (param $n i32) (result i64)
    (local $c i32) (local $conn i32) (local $action i32) (local $hole i32) (local $req i32)
    (local $h i64) (local $r i64) (local $s i32)
    (local.set $c (i32.load (local.get $p)))
    (local.set $conn (i32.add (local.get $p) (i32.const 4)))
    (local.set $action (i32.load (i32.add (local.get $conn) (local.get $c))))
    (local.set $hole (i32.load (i32.add (i32.add (local.get $conn) (local.get $c)) (i32.const 4))))
    (local.set $req (i32.add (i32.add (local.get $conn) (local.get $c)) (i32.const 8)))
    (local.set $h (call $begin (local.get $conn) (local.get $c)))
    (if (i64.lt_s (local.get $h) (i64.const 0))
      (then (return (call $status (i32.wrap_i64 (local.get $h))))))
    (call $digits (local.get $h) (i32.add (local.get $req) (local.get $hole)))
    (local.set $r (call $execute (local.get $conn) (local.get $c) (local.get $req)
                        (i32.sub (local.get $n) (i32.sub (local.get $req) (local.get $p)))))
    (if (i32.eq (local.get $action) (i32.const 1))
      (then (local.set $s (call $commit (local.get $h)))
            (if (i32.ne (local.get $s) (i32.const 0))
              (then (return (call $status (local.get $s)))))))
    (if (i32.eq (local.get $action) (i32.const 2))
      (then (drop (call $rollback (local.get $h)))))
    (if (i32.eq (local.get $action) (i32.const 3)) (then unreachable))
    (if (i32.eq (local.get $action) (i32.const 4)) (then (loop $l (br $l))))
    (local.get $r))
  (func (export "beginloop") (param $p i32) (param $n i32) (result i64)
    (local $c i32) (local $h i64) (local $count i32)
    (local.set $c (i32.load (local.get $p)))
    (block $done
      (loop $more
        (local.set $h (call $begin (i32.add (local.get $p) (i32.const 4)) (local.get $c)))
        (br_if $done (i64.lt_s (local.get $h) (i64.const 0)))
        (local.set $count (i32.add (local.get $count) (i32.const 1)))
        (br_if $more (i32.lt_u (local.get $count) (i32.const 1000)))))
    (if (i32.load (i32.add (i32.add (local.get $p) (i32.const 4)) (local.get $c)))
      (then (loop $l (br $l))))
    (i32.store (i32.const 0x200) (local.get $count))
    (i32.store (i32.const 0x204) (i32.wrap_i64 (local.get $h)))
    (i64.or (i64.shl (i64.const 0x200) (i64.const 32)) (i64.const 8)))
)
"""

REDIS_WAT = r"""
(module
  (import "omnicore:redis" "command" (func $command (param i32 i32 i32 i32) (result i64)))
  (memory (export "memory") 2)
""" + ALLOC + forward("command", "command") + r"""
)
"""


def sql_wasm(name: str, wat: str = SQL_WAT) -> bytes:
    return plugin_wasm(name, wat)


def framed(conn: str, *parts: bytes) -> bytes:
    c = conn.encode()
    return struct.pack("<I", len(c)) + c + b"".join(parts)


class Db:
    """A loaded plugin and the app it runs in."""

    def __init__(self, app: OmniApp, name: str) -> None:
        self.app, self.name = app, name

    def call(self, handler: str, data: bytes) -> bytes:
        return self.app.plugins.call(self.name, handler, data)

    def query(self, conn: str, sql: str, *params: Any, **extra: Any) -> dict[str, Any]:
        req = json.dumps({"sql": sql, "params": list(params), **extra}).encode()
        return dict(json.loads(self.call("query", framed(conn, req))))

    def rows(self, conn: str, sql: str, *params: Any) -> list[list[Any]]:
        return list(self.query(conn, sql, *params)["rows"])

    def execute(self, conn: str, sql: str, *params: Any) -> dict[str, Any]:
        req = json.dumps({"sql": sql, "params": list(params)}).encode()
        return dict(json.loads(self.call("execute", framed(conn, req))))

    def refused(self, handler: str, data: bytes) -> str:
        with pytest.raises(GuestError) as info:
            self.call(handler, data)
        return str(info.value.guest_message)

    def txrun(self, conn: str, action: int, sql: str, *params: Any) -> bytes:
        head = json.dumps({"sql": sql, "params": list(params)})[:-1] + ',"tx":'
        req = (head + " " * 20 + "}").encode()
        return self.call("txrun", framed(conn, struct.pack("<II", action, len(head)), req))

    def command(self, conn: str, cmd: str, *args: Any) -> Any:
        req = json.dumps({"cmd": cmd, "args": list(args)}).encode()
        return json.loads(self.call("command", framed(conn, req)))


def check_denied_and_down(db: Db, handler: str, request: bytes, name: str, wrong: str,
                          log: str) -> None:
    """Connector ``name``, given the wrong password ``wrong``, is DENIED; ``gone`` (nothing
    listens there) is UNAVAILABLE; and ``wrong`` is neither in the connectors' description
    nor in ``log``."""
    assert db.refused(handler, framed(name, request)) == \
        f"DENIED: authentication failed for connector {name}"
    assert db.refused(handler, framed("gone", request)) == \
        "UNAVAILABLE: connector gone: connection refused"
    shown = json.dumps(db.app.databases.describe())
    assert wrong not in shown and wrong not in log


def on_threads(work: Callable[[], None], count: int = 8) -> list[BaseException]:
    """Run ``work`` on ``count`` threads at once: what they raised."""
    failures: list[BaseException] = []

    def run() -> None:
        try:
            work()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return failures


@pytest.fixture(scope="session")
def maria() -> Iterator[MariaDB]:
    server = MariaDB.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[Redis]:
    server = Redis.start()
    yield server
    server.stop()


@pytest.fixture
def sql_app(make_app: Callable[..., OmniApp]) -> Iterator[Callable[..., Db]]:
    """``load(connectors, secrets, grants, name=, wat=, limits=)``: an app (one per test, made
    at the first load) with those connectors and secrets, and a plugin granted ``grants``."""
    apps: list[OmniApp] = []

    def load(connectors: dict[str, Any], grants: dict[str, Any], *, name: str = "shop",
             secrets: dict[str, str] | None = None, wat: str = SQL_WAT,
             limits: dict[str, Any] | None = None) -> Db:
        if not apps:
            app = make_app(builtin_extensions=None, overrides={
                "sandbox": {"watch": False}, "connectors": connectors})
            app.start()
            apps.append(app)
        app = apps[0]
        for k, v in (secrets or {}).items():
            app.secrets.set(k, v)
        app.plugins.load(sql_wasm(name, wat), grants=grants,
                         limits=limits or {"timeout_ms": 5000})
        return Db(app, name)

    yield load
    for app in apps:
        app.stop(grace=0)
