"""omnicore:sql (specs/abi.md §4.10) on a real MariaDB (tests/dbservers.py): ``?``
placeholders, the deadline on the server and the client, caps read unbuffered."""

from __future__ import annotations

import io
import json
import os
import signal
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pymysql
import pytest
from pymysql.connections import MySQLResult
from pymysql.protocol import MysqlPacket

from omnicore.egress.db import mysql_wire
from omnicore.egress.db.base import CLIENT_GRACE_S, HARD_GRACE_S
from omnicore.egress.db.mysql import placeholders
from omnicore.egress.db.mysql_wire import check_pymysql
from omnicore.egress.refused import Refused
from omnicore.errors import DeadlineExceeded, GuestError, Trap
from omnicore.toolchains import build
from tests.db_fixtures import (  # noqa: F401 - fixtures
    Db,
    check_denied_and_down,
    framed,
    maria,
    sql_app,
)
from tests.dbservers import PASSWORD, MariaDB, free_port
from tests.waiting import all_threads_stopped, eventually

ROOT = Path(__file__).resolve().parents[2]


def connectors(url: str, **extra: Any) -> dict[str, Any]:
    # The tests make their tables through the plugin: the operator widens the kinds a
    # plugin may send (specs/abi.md §4.10, Statements).
    return {"shop": {"kind": "mysql", "url": url, "secret": "shop-pw",
                     "statements": {"allow": ["create"]}, **extra}}


@pytest.fixture
def url(maria: MariaDB, request: pytest.FixtureRequest) -> str:  # noqa: F811
    return maria.database(f"t{abs(hash(request.node.name)) % 10**8}_{time.time_ns() % 10**6}")


@pytest.fixture
def shop(sql_app: Callable[..., Db], url: str) -> Db:  # noqa: F811
    db = sql_app(connectors(url), {"sql": {"connectors": ["shop"]}},
                 secrets={"shop-pw": PASSWORD})
    db.execute("shop", "CREATE TABLE items (id INT AUTO_INCREMENT PRIMARY KEY, "
                       "name VARCHAR(100), qty INT)")
    return db


def test_placeholders_outside_strings_and_comments_only() -> None:
    assert placeholders("SELECT ?, '?', \"?\", `?`, 5 % 2 -- ?\n, ? /* ? */ # ?") == (
        "SELECT %s, '?', \"?\", `?`, 5 %% 2 -- ?\n, %s /* ? */ # ?", 2)
    assert placeholders("SELECT 'it''s ?', 'a\\'?', ?") == (
        "SELECT 'it''s ?', 'a\\'?', %s", 1)
    # A % in a string or comment is doubled too: PyMySQL's formatting reads the whole text.
    assert placeholders("SELECT '%x%' LIKE ?, 1 -- 100%\n") == (
        "SELECT '%%x%%' LIKE %s, 1 -- 100%%\n", 1)


def test_the_pymysql_internals_the_connector_reads_through_are_there(
        monkeypatch: pytest.MonkeyPatch) -> None:
    check_pymysql()  # (it ran at import too)

    class Changed:
        def _read_packet(self) -> None:
            self._read_frame()

    monkeypatch.setattr(mysql_wire, "_PRIVATE", ((Changed, "_read_packet", ("_next_seq_id",)),
                                            (Changed, "_gone", ())))
    with pytest.raises(ImportError, match=r"Changed\._read_packet .*missing: _next_seq_id"):
        check_pymysql()
    monkeypatch.setattr(mysql_wire, "_PRIVATE", ((Changed, "_gone", ()),))
    with pytest.raises(ImportError, match=r"Changed\._gone .*missing: _gone.*pymysql>=1\.1,<3"):
        check_pymysql()


def _coded(cell: bytes | None) -> bytes:
    """A cell of a text-protocol row: NULL, or a length-coded string."""
    if cell is None:
        return b"\xfb"
    n = len(cell)
    head = (bytes([n]) if n < 251 else b"\xfc" + struct.pack("<H", n) if n < 1 << 16
            else b"\xfd" + struct.pack("<HB", n & 0xFFFF, n >> 16) if n < 1 << 24
            else b"\xfe" + struct.pack("<Q", n))
    return head + cell


@pytest.mark.parametrize("data", [
    _coded(b"1") + _coded("pomme ✓".encode()) + _coded(None) + _coded(b"2.5"),
    _coded(b"x" * 250) + _coded(b"y" * 251) + _coded(b"z" * 70_000) + _coded(b""),
    _coded(b"7") + b"\xff" + _coded(b"a") + _coded(b"1.5"),  # 255: NULL to PyMySQL
    _coded(b"7") + _coded(b"ab"),                              # fewer cells than columns
    _coded(b"7") + b"\x05ab",                                  # a cell cut short
    _coded(b"7") + b"\xfc\x01",                                # a length cut short
])
def test_rows_are_read_as_pymysql_reads_them(data: bytes) -> None:
    converters = [("ascii", int), ("utf8", None), (None, None), ("ascii", float)]
    result = MySQLResult.__new__(MySQLResult)  # (no connection: only its row reader is used)
    result.converters, result.unbuffered_active = converters, False

    def outcome(read: Callable[[], Any]) -> Any:
        try:
            return read()
        except Exception as exc:
            return type(exc)

    assert outcome(lambda: mysql_wire.parse_row(data, converters)) == outcome(
        lambda: result._read_row_from_packet(MysqlPacket(data, "utf8")))


def test_a_row_of_16_mib_and_more_is_read_across_frames(
        sql_app: Callable[..., Db], url: str) -> None:  # noqa: F811
    # MySQL's protocol sends a packet of 16 MiB or more as frames of 0xFFFFFF bytes ended by a
    # shorter one: the connector's own packet reader must join them, keep the sequence and
    # leave the connection ready for the next statement.
    db = sql_app(connectors(url, max_result_bytes=64 << 20, pool_size=1),
                 {"sql": {"connectors": ["shop"]}}, secrets={"shop-pw": PASSWORD})
    backend = db.app.databases.backend("shop", ("mysql",))
    size = (16 << 20) + 5  # one full frame and the start of a second
    got = json.loads(backend.run("t", True, "SELECT REPEAT('x', ?) AS v, 7 AS n", [size],
                                 time.monotonic() + 30))
    assert [len(got["rows"][0][0]), got["rows"][0][1]] == [size, 7]
    assert set(got["rows"][0][0]) == {"x"}
    # A row packet of exactly 0xFFFFFF bytes (the 8-digit length, 1 + 8 bytes, and the text,
    # 4 + n): one full frame and an empty one after it; then the same pooled connection.
    n = 0xFFFFFF - 13
    exact = json.loads(backend.run("t", True, "SELECT LENGTH(REPEAT('y', ?)) AS n, REPEAT('y', ?)",
                                   [n, n], time.monotonic() + 30))
    assert exact["rows"][0][0] == n and len(exact["rows"][0][1]) == n
    assert json.loads(backend.run("t", True, "SELECT 1 + 1", [], time.monotonic() + 5))["rows"] == \
        [[2]]


@pytest.mark.parametrize(("seq", "due", "error", "words"), [
    (5, 0, "InternalError", "packet sequence 5 where 0 was due"),
    (0, 3, "OperationalError", "Lost connection to MySQL server during query")])
def test_a_packet_out_of_sequence_closes_the_connection(
        seq: int, due: int, error: str, words: str) -> None:
    # (a server going down answers with sequence 0; anything else out of step is a bug on
    # one side): either way nothing more is read from that connection.
    raw = mysql_wire.Raw(defer_connect=True)
    raw._rfile, raw._next_seq_id = io.BytesIO(bytes([3, 0, 0, seq]) + b"abc"), due
    with pytest.raises(getattr(pymysql.err, error), match=words):
        raw._read_payload()
    assert raw._rfile is None  # closed


def test_query_execute_and_last_insert_id(shop: Db) -> None:
    assert shop.execute("shop", "INSERT INTO items (name, qty) VALUES (?, ?)", "apple", 3) == \
        {"rows_affected": 1, "last_insert_id": 1}
    got = shop.query("shop", "SELECT id, name, qty FROM items WHERE qty > ?", 0)
    assert got == {"columns": [{"name": "id", "type": "int"}, {"name": "name", "type": "varchar"},
                               {"name": "qty", "type": "int"}],
                   "rows": [[1, "apple", 3]]}
    refused = shop.refused("query", framed("shop", b'{"sql": "SELECT ?", "params": []}'))
    assert refused == "INVALID: the statement has 1 placeholders but 0 params were given"


def test_injection_text_in_a_parameter_stays_data(shop: Db) -> None:
    evil = "x'); DROP TABLE items; -- \\' \" %s ?"
    shop.execute("shop", "INSERT INTO items (name, qty) VALUES (?, ?)", evil, 1)
    assert shop.rows("shop", "SELECT name FROM items WHERE name = ?", evil) == [[evil]]
    assert shop.rows("shop", "SELECT count(*) FROM items WHERE name = ?", "' OR '1'='1") == \
        [[0]]
    # One statement per call: a second one is refused before it is sent.
    msg = shop.refused("execute", framed("shop", b'{"sql": "SELECT 1; DROP TABLE items"}'))
    assert msg.startswith("INVALID: connector shop: holds more than one statement"), msg
    assert shop.rows("shop", "SELECT count(*) FROM items") == [[1]]


def test_types_round_trip(shop: Db) -> None:
    values = [None, True, -(2**63), 2**63 - 1, 1.5, "text ✓", {"$bytes": "AAEC/w=="},
              {"$json": {"a": [1, None]}}, {"$timestamp": "2026-11-24T12:00:00"},
              {"$date": "2026-11-24"}, {"$time": "12:30:05"}, {"$decimal": "12.50"}]
    sql = ("SELECT ?, ?, ?, ?, ?, ?, CAST(? AS BINARY), ?, CAST(? AS DATETIME), "
           "CAST(? AS DATE), CAST(? AS TIME), CAST(? AS DECIMAL(10,2))")
    row = shop.rows("shop", sql, *values)[0]
    assert row[0] is None and row[1] == 1          # MySQL has no boolean: true is 1
    assert row[2:7] == values[2:7]
    assert json.loads(row[7]) == {"a": [1, None]}  # JSON is text in MariaDB
    assert row[8:] == values[8:]
    shop.execute("shop", "CREATE TABLE docs (j JSON, b BLOB, t TIMESTAMP NULL)")
    shop.execute("shop", "INSERT INTO docs VALUES (?, ?, ?)", {"$json": [1, "x"]},
                 {"$bytes": "/w=="}, {"$timestamp": "2026-11-24T12:00:00Z"})
    row = shop.rows("shop", "SELECT j, b, t FROM docs")[0]
    assert json.loads(row[0]) == [1, "x"] and row[1] == {"$bytes": "/w=="}
    assert row[2]["$timestamp"].startswith("2026-11-24T")


def test_ten_million_rows_stop_at_the_cap(sql_app: Callable[..., Db], url: str) -> None:  # noqa: F811
    db = sql_app(connectors(url, max_rows=1000), {"sql": {"connectors": ["shop"]}},
                 secrets={"shop-pw": PASSWORD})
    started = time.monotonic()
    msg = db.refused("query", framed("shop", json.dumps(
        {"sql": "SELECT seq, REPEAT('x', 10) FROM seq_1_to_10000000"}).encode()))
    assert msg == "TOO_LARGE: the result has more than 1000 rows (connector shop, max_rows)"
    assert time.monotonic() - started < 3
    assert db.rows("shop", "SELECT 1") == [[1]]


def _running(maria: MariaDB, needle: str) -> int:  # noqa: F811
    return len([r for r in maria.sql("SHOW FULL PROCESSLIST")
                if needle in str(r[7]) and "PROCESSLIST" not in str(r[7])])


def test_sleep_ends_at_the_deadline_and_leaves_nothing_running(
        sql_app: Callable[..., Db], url: str, maria: MariaDB) -> None:  # noqa: F811
    db = sql_app(connectors(url), {"sql": {"connectors": ["shop"]}},
                 secrets={"shop-pw": PASSWORD}, limits={"timeout_ms": 800})
    started = time.monotonic()
    try:
        msg = db.refused("query", framed("shop", b'{"sql": "SELECT SLEEP(60) AS nap1"}'))
        assert msg == "UNAVAILABLE: connector shop: statement timed out"
    except DeadlineExceeded:
        pass  # a machine too slow for the margin: the call's deadline ended it
    assert time.monotonic() - started < 1.5
    assert _running(maria, "nap1") == 0
    with pytest.raises(DeadlineExceeded):
        db.call("querythenspin", framed("shop", b'{"sql": "SELECT SLEEP(60) AS nap2"}'))
    assert _running(maria, "nap2") == 0
    assert db.rows("shop", "SELECT 2") == [[2]]


def test_a_transaction_commits_or_rolls_back_with_the_call(shop: Db) -> None:
    insert = "INSERT INTO items (id, name, qty) VALUES (?, 'tx', 1)"
    assert json.loads(shop.txrun("shop", 1, insert, 1))["rows_affected"] == 1
    shop.txrun("shop", 2, insert, 2)
    shop.txrun("shop", 0, insert, 3)
    with pytest.raises(Trap):
        shop.txrun("shop", 3, insert, 4)
    with pytest.raises(DeadlineExceeded):
        shop.txrun("shop", 4, insert, 5)
    assert shop.rows("shop", "SELECT id FROM items ORDER BY id") == [[1]]
    assert shop.app.databases.describe()[0]["in_use"] == 0


def test_wrong_password_and_a_server_that_is_down(sql_app: Callable[..., Db],  # noqa: F811
                                                  url: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    wrong = "wrong-Secret-98765"
    down = url.replace(url.split("@")[1].split("/")[0], f"127.0.0.1:{free_port()}")
    conns = {**connectors(url), "gone": {"kind": "mysql", "url": down, "secret": "shop-pw"}}
    db = sql_app(conns, {"sql": {"connectors": ["shop", "gone"]}},
                 secrets={"shop-pw": wrong})
    check_denied_and_down(db, "query", b'{"sql": "SELECT 1"}', "shop", wrong, caplog.text)


def test_read_only_connectors_refuse_writes(sql_app: Callable[..., Db], url: str) -> None:  # noqa: F811
    db = sql_app(connectors(url, read_only=True), {"sql": {"connectors": ["shop"]}},
                 secrets={"shop-pw": PASSWORD})
    db.rows("shop", "SELECT 1")
    msg = db.refused("execute", framed("shop", b'{"sql": "CREATE TABLE nope (x int)"}'))
    assert msg.startswith("DENIED: connector shop is read-only"), msg


def test_the_pool_survives_a_server_restart(shop: Db, maria: MariaDB) -> None:  # noqa: F811
    assert shop.rows("shop", "SELECT 1") == [[1]]
    maria.halt()
    try:
        assert shop.refused("query", framed("shop", b'{"sql": "SELECT 1"}')).startswith(
            "UNAVAILABLE: connector shop:")
    finally:
        maria.resume()
    assert shop.rows("shop", "SELECT 3") == [[3]]


def _stopped(pid: int) -> None:
    eventually(lambda: all_threads_stopped(pid), "every thread of the server stopped")


def test_a_server_that_answers_nothing_ends_at_the_deadline(
        shop: Db, maria: MariaDB) -> None:  # noqa: F811
    """Neither the server's timeout nor KILL QUERY can end a statement on a stopped server:
    the watchdog's cut does (the socket shut down a grace after the KILL), as "timed out",
    by the call's deadline and its two graces, and is not retried."""
    assert shop.rows("shop", "SELECT 1") == [[1]]  # a pooled connection
    backend = shop.app.databases.backend("shop", ("mysql",))
    os.kill(maria.proc.pid, signal.SIGSTOP)
    try:
        _stopped(maria.proc.pid)
        started = time.monotonic()
        with pytest.raises(Refused) as info:
            backend.run("shop", True, "SELECT 2", [], time.monotonic() + 0.5)
        waited = time.monotonic() - started
    finally:
        os.kill(maria.proc.pid, signal.SIGCONT)
    assert (info.value.status, str(info.value)) == (
        "UNAVAILABLE", "connector shop: statement timed out")
    assert waited < 0.5 + CLIENT_GRACE_S + HARD_GRACE_S + 5  # by the deadline; no second try
    assert shop.rows("shop", "SELECT 3") == [[3]]  # the closed connection was not kept


def test_the_c_stock_example_reads_mariadb_through_the_inventory_connector(
        sql_app: Callable[..., Db], url: str, tmp_path: Path) -> None:  # noqa: F811
    """plugins/stock/c, as deploy/compose.yaml wires it: the `inventory` connector on
    MariaDB with plugins/stock/schema.sql, its password a secret only the host holds."""
    db = sql_app({"inventory": {"kind": "mysql", "url": url, "secret": "inventory-pw",
                                "statements": {"allow": ["create"]}}},
                 {"sql": {"connectors": ["inventory"]}}, secrets={"inventory-pw": PASSWORD})
    schema = (ROOT / "plugins" / "stock" / "schema.sql").read_text()
    for statement in schema.split(";"):
        body = "\n".join(line for line in statement.splitlines() if not line.startswith("--"))
        if body.strip():
            db.execute("inventory", body)
    app = db.app
    app.plugins.load(build(ROOT / "plugins" / "stock" / "c", tmp_path),
                     grants={"sql": {"connectors": ["inventory"]}})
    got = app.plugins.call_json("stock-c", "check", {"sku": "A-1"})
    assert got["rows"] == [["A-1", "Widget", 12, {"$decimal": "2.50"}]]
    assert [c["name"] for c in got["columns"]] == ["sku", "name", "qty", "price"]
    for sku in ("Z-9", "A-1' OR '1'='1", "A-1'; DROP TABLE stock; --"):
        with pytest.raises(GuestError, match="no such sku"):
            app.plugins.call_json("stock-c", "check", {"sku": sku})
    assert db.query("inventory", "SELECT count(*) AS n FROM stock")["rows"] == [[3]]
