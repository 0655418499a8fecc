"""omnicore:sql (specs/abi.md §4.10) on a real PostgreSQL (tests/pgcluster.py): a WAT plugin
(tests/db_fixtures.py) runs statements through a connector whose password only the host
holds."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from omnicore.errors import ConfigError, DeadlineExceeded, Trap
from tests.db_fixtures import Db, framed, on_threads, sql_app  # noqa: F401 - a fixture
from tests.pgcluster import Cluster

PASSWORD = "pg-Secret-77413"
ROLE = "omniconn"


@pytest.fixture(scope="module")
def pg(pg_cluster: Cluster) -> Iterator[dict[str, Any]]:
    """A database of a role that logs in with a password (scram), whatever the cluster's
    default authentication: the tests need a wrong password to be refused."""
    hba = pg_cluster.root / "data" / "pg_hba.conf"
    text = hba.read_text()
    if ROLE not in text:
        hba.write_text(f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n" + text)
        pg_cluster.pg_ctl("reload", "-w")
        pg_cluster.psql(f"CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}'")
    db = f"conn_{int(time.time() * 1000) % 10**9}"
    pg_cluster.psql(f'CREATE DATABASE "{db}" OWNER {ROLE}')
    url = f"postgresql://{ROLE}@127.0.0.1:{pg_cluster.port}/{db}"
    yield {"url": url, "db": db, "cluster": pg_cluster}


def connectors(pg: dict[str, Any], **extra: Any) -> dict[str, Any]:
    # The tests make their tables through the plugin: the operator widens the kinds a
    # plugin may send (specs/abi.md §4.10, Statements).
    base = {"kind": "postgres", "url": pg["url"], "secret": "orders-pw",
            "statements": {"allow": ["create", "truncate", "alter_table"]}}
    return {"orders": {**base, **extra}}


@pytest.fixture
def shop(sql_app: Callable[..., Db], pg: dict[str, Any]) -> Db:  # noqa: F811
    db = sql_app(connectors(pg), {"sql": {"connectors": ["orders"]}},
                 secrets={"orders-pw": PASSWORD})
    db.execute("orders", "CREATE TABLE IF NOT EXISTS items (id int PRIMARY KEY, name text, "
                         "qty int)")
    db.execute("orders", "TRUNCATE items")
    return db


def test_query_and_execute_with_typed_parameters(shop: Db) -> None:
    assert shop.execute("orders", "INSERT INTO items VALUES ($1, $2, $3), ($4, $5, $6)",
                        1, "apple", 3, 2, "pear", 0) == {"rows_affected": 2}
    got = shop.query("orders", "SELECT id, name, qty FROM items WHERE qty > $1 ORDER BY id", -1)
    assert got["columns"] == [{"name": "id", "type": "int4"}, {"name": "name", "type": "text"},
                              {"name": "qty", "type": "int4"}]
    assert got["rows"] == [[1, "apple", 3], [2, "pear", 0]]
    assert shop.rows("orders", "SELECT id FROM items WHERE id = $1", 99) == []


def test_injection_text_in_a_parameter_stays_data(shop: Db) -> None:
    shop.execute("orders", "INSERT INTO items VALUES (1, 'apple', 3)")
    evil = "x'); DROP TABLE items; --"
    shop.execute("orders", "INSERT INTO items VALUES ($1, $2, $3)", 2, evil, 1)
    assert shop.rows("orders", "SELECT name FROM items WHERE name = $1", evil) == [[evil]]
    assert shop.rows("orders", "SELECT count(*) FROM items WHERE name = $1",
                     "' OR '1'='1") == [[0]]
    assert shop.rows("orders", "SELECT count(*) FROM items") == [[2]]


def test_types_round_trip(shop: Db) -> None:
    values = [None, True, False, -(2**63), 2**63 - 1, 1.5, "text ✓",
              {"$bytes": "AAEC/w=="}, {"$json": {"a": [1, None, "x"]}},
              {"$timestamp": "2026-11-24T12:00:00Z"}, {"$timestamp": "2026-11-24T12:00:00"},
              {"$date": "2026-11-24"}, {"$time": "12:30:05"}, {"$decimal": "12.50"}]
    casts = ["", "::bool", "::bool", "::int8", "::int8", "::float8", "::text", "::bytea",
             "::jsonb", "::timestamptz", "::timestamp", "::date", "::time", "::numeric"]
    sql = "SELECT " + ", ".join(f"${i + 1}{c}" for i, c in enumerate(casts))
    got = shop.query("orders", sql, *values)
    row = got["rows"][0]
    assert row[:8] == values[:8]
    assert row[8] == {"$json": {"a": [1, None, "x"]}}
    assert row[9]["$timestamp"].startswith("2026-11-24")   # in the session's time zone
    assert row[10:] == values[10:]
    assert [c["type"] for c in got["columns"]][1:] == [
        "bool", "bool", "int8", "int8", "float8", "text", "bytea", "jsonb", "timestamptz",
        "timestamp", "date", "time", "numeric"]


def test_bad_parameters_and_statements_are_one_line(shop: Db) -> None:
    def req(body: dict[str, Any]) -> bytes:
        return framed("orders", json.dumps(body).encode())

    assert shop.refused("query", req({"sql": "SELECT $1", "params": [{"$foo": 1}]})) == \
        "INVALID: params[0]: unknown tag $foo"
    assert shop.refused("query", req({"sql": "SELECT $1", "params": [{"a": 1, "b": 2}]})) \
        .startswith("INVALID: params[0]: an object or array must be wrapped in $json")
    msg = shop.refused("query", req({"sql": "SELEC 1"}))
    assert msg.startswith("INVALID: connector orders: syntax error") and "\n" not in msg
    msg = shop.refused("execute", req({"sql": "INSERT INTO items VALUES (1, 'a', 1), "
                                              "(1, 'b', 2)"}))
    assert msg.startswith("INVALID: connector orders: duplicate key")
    assert shop.refused("query", framed("orders", b"not json")).startswith("INVALID:")


@pytest.mark.parametrize(("body", "said"), [
    (b'{"sql": "SELECT $1::float8", "params": [NaN]}', "INVALID: request is not JSON: NaN"),
    (b'{"sql": "SELECT 1", "x": -Infinity}', "INVALID: request is not JSON: -Infinity"),
    (b'{"sql": "SELECT $1", "params": [' + b'[' * 64 + b']' * 64 + b']}',
     "INVALID: request is not JSON: the JSON is nested more than 64 levels deep"),
    (b'{"sql": "SELECT 1"} {"sql": "SELECT 2"}', "INVALID: request is not JSON: Extra data"),
    (b'{"sql": "SELECT \xff"}', "INVALID: request is not JSON: 'utf-8' codec"),
    (b'["SELECT 1"]', "INVALID: the request must be a JSON object"),
    (b'{"sql": "SELECT $1::numeric", "params": [123456789012345678901]}',
     "INVALID: params[0]: integer out of the 64-bit range"),
])
def test_a_request_is_read_as_strictly_on_its_fast_path(shop: Db, body: bytes,
                                                        said: str) -> None:
    """The request's parse (capabilities/sql._parsed) takes a shortcut for the common case
    (few brackets, no 19-digit run): NaN, infinities, nesting past 64, trailing data, bad
    UTF-8, a non-object and an integer past 64 bits are refused as the whole way refuses
    them, and a request within both bounds still runs."""
    assert shop.refused("query", framed("orders", body)).startswith(said)
    nested = b'{"sql": "SELECT $1::jsonb", "params": [{"$json": ' + b'[' * 60 + \
        b']' * 60 + b'}]}'
    assert json.loads(shop.call("query", framed("orders", nested)))["rows"] == \
        [[{"$json": json.loads("[" * 60 + "]" * 60)}]]


def test_an_ungranted_connector_is_denied(sql_app: Callable[..., Db],  # noqa: F811
                                          pg: dict[str, Any]) -> None:
    conns = {**connectors(pg), "other": {"kind": "postgres", "url": pg["url"],
                                         "secret": "orders-pw"}}
    db = sql_app(conns, {"sql": {"connectors": ["orders"]}}, secrets={"orders-pw": PASSWORD})
    assert db.refused("query", framed("other", b'{"sql": "SELECT 1"}')) == \
        "DENIED: connector other is not granted"
    assert db.refused("query", framed("nope", b'{"sql": "SELECT 1"}')) == \
        "DENIED: connector nope is not granted"


def test_a_grant_naming_no_such_connector_is_refused(sql_app: Callable[..., Db],  # noqa: F811
                                                     pg: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"grant\.sql\.connectors names 'missing'"):
        sql_app(connectors(pg), {"sql": {"connectors": ["missing"]}})


def test_a_wrong_password_is_one_line_without_the_secret(
        sql_app: Callable[..., Db], pg: dict[str, Any],  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    wrong = "wrong-Secret-123456"
    db = sql_app(connectors(pg), {"sql": {"connectors": ["orders"]}},
                 secrets={"orders-pw": wrong})
    msg = db.refused("query", framed("orders", b'{"sql": "SELECT 1"}'))
    assert msg == "DENIED: authentication failed for connector orders"
    described = db.app.databases.describe()[0]
    assert described["last_error"] == msg and wrong not in json.dumps(described)
    assert wrong not in caplog.text and PASSWORD not in caplog.text


def test_a_server_that_is_down_is_unavailable(sql_app: Callable[..., Db],  # noqa: F811
                                              pg: dict[str, Any]) -> None:
    from tests.dbservers import free_port

    url = pg["url"].replace(f":{pg['cluster'].port}/", f":{free_port()}/")
    db = sql_app({"orders": {"kind": "postgres", "url": url, "secret": "orders-pw"}},
                 {"sql": {"connectors": ["orders"]}}, secrets={"orders-pw": PASSWORD})
    started = time.monotonic()
    msg = db.refused("query", framed("orders", b'{"sql": "SELECT 1"}'))
    assert msg == "UNAVAILABLE: connector orders: connection refused"
    assert time.monotonic() - started < 3


def test_a_missing_secret_is_unavailable(sql_app: Callable[..., Db],  # noqa: F811
                                         pg: dict[str, Any]) -> None:
    db = sql_app(connectors(pg), {"sql": {"connectors": ["orders"]}})
    assert db.refused("query", framed("orders", b'{"sql": "SELECT 1"}')) == \
        "UNAVAILABLE: connector orders: secret orders-pw is not set"


def test_ten_million_rows_stop_at_the_cap(sql_app: Callable[..., Db],  # noqa: F811
                                          pg: dict[str, Any]) -> None:
    db = sql_app(connectors(pg, max_rows=1000), {"sql": {"connectors": ["orders"]}},
                 secrets={"orders-pw": PASSWORD})
    started = time.monotonic()
    # generate_series in the select list streams its rows (in FROM, the server would make
    # all ten million before sending the first, seconds on a busy machine).
    msg = db.refused("query", framed("orders", json.dumps(
        {"sql": "SELECT generate_series(1, 10000000) AS g, repeat('x', 10)"}).encode()))
    assert msg == "TOO_LARGE: the result has more than 1000 rows (connector orders, max_rows)"
    assert time.monotonic() - started < 3
    msg = db.refused("query", framed("orders", json.dumps(
        {"sql": "SELECT repeat('y', 1000000) FROM generate_series(1, 100)"}).encode()))
    assert msg.startswith("TOO_LARGE: the result is larger than 8388608 bytes")
    assert db.rows("orders", "SELECT 1") == [[1]]   # the connection serves on


def ended_by_deadline(db: Db, data: bytes) -> bool:
    """The statement ended with the call: the plugin heard "statement timed out" (the
    server's timeout is set a little short of the deadline for that) or, when the machine
    is too slow for that margin, the call ended with DeadlineExceeded."""
    try:
        msg = db.refused("query", data)
    except DeadlineExceeded:
        return True
    return msg == "UNAVAILABLE: connector orders: statement timed out"


def _running(pg: dict[str, Any], needle: str) -> str:
    return str(pg["cluster"].psql(
        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE "
        f"'%{needle}%' AND pid <> pg_backend_pid()")).strip()


def test_pg_sleep_ends_at_the_deadline_and_leaves_nothing_running(
        sql_app: Callable[..., Db], pg: dict[str, Any]) -> None:  # noqa: F811
    db = sql_app(connectors(pg), {"sql": {"connectors": ["orders"]}},
                 secrets={"orders-pw": PASSWORD}, limits={"timeout_ms": 800})
    started = time.monotonic()
    assert ended_by_deadline(db, framed("orders", b'{"sql": "SELECT pg_sleep(60) AS nap1"}'))
    assert time.monotonic() - started < 1.5
    assert _running(pg, "nap1") == "0"
    # The guest that ignores the answer and spins is ended by its deadline too.
    with pytest.raises(DeadlineExceeded):
        db.call("querythenspin", framed("orders", b'{"sql": "SELECT pg_sleep(60) AS nap2"}'))
    assert _running(pg, "nap2") == "0"
    assert db.rows("orders", "SELECT 2") == [[2]]


def _count(db: Db) -> int:
    return int(db.rows("orders", "SELECT count(*) FROM items")[0][0])


def test_a_query_run_again_is_prepared_and_follows_its_table_changing(
        shop: Db, pg: dict[str, Any]) -> None:
    shop.execute("orders", "CREATE TABLE shelf (id int PRIMARY KEY, name text)")
    shop.execute("orders", "INSERT INTO shelf VALUES (1, 'apple')")
    sql = "SELECT * FROM shelf WHERE id = $1"
    for _ in range(3):
        assert shop.rows("orders", sql, 1) == [[1, "apple"]]
    # One caller: the pool hands out the same connection, where the second run prepared it.
    assert shop.rows("orders", "SELECT count(*) FROM pg_prepared_statements "
                               "WHERE statement = $1", sql) == [[1]]
    # Changed by another session, the prepared statement's columns are stale: it is
    # prepared afresh and the call sees the new column.
    pg["cluster"].psql("ALTER TABLE shelf ADD COLUMN qty int DEFAULT 7", db=pg["db"])
    got = shop.query("orders", sql, 1)
    assert [c["name"] for c in got["columns"]] == ["id", "name", "qty"]
    assert got["rows"] == [[1, "apple", 7]]
    shop.execute("orders", "ALTER TABLE shelf DROP COLUMN name")   # through the connector
    assert shop.rows("orders", sql, 1) == [[1, 7]]
    assert shop.rows("orders", sql, 1) == [[1, 7]]


def test_a_transaction_commits_or_rolls_back_with_the_call(shop: Db) -> None:
    insert = "INSERT INTO items VALUES ($1, 'tx', 1)"
    assert json.loads(shop.txrun("orders", 1, insert, 1)) == {"rows_affected": 1}
    assert _count(shop) == 1
    shop.txrun("orders", 2, insert, 2)          # rolled back by the guest
    shop.txrun("orders", 0, insert, 3)          # returned without committing
    with pytest.raises(Trap):
        shop.txrun("orders", 3, insert, 4)      # trapped
    with pytest.raises(DeadlineExceeded):
        shop.txrun("orders", 4, insert, 5)      # ran past its deadline
    assert shop.rows("orders", "SELECT id FROM items ORDER BY id") == [[1]]
    stats = shop.app.databases.describe()[0]
    assert stats["in_use"] == 0                 # every connection came back


def test_a_transaction_loop_cannot_starve_other_plugins(
        sql_app: Callable[..., Db], pg: dict[str, Any]) -> None:  # noqa: F811
    grants = {"sql": {"connectors": ["orders"]}}
    hog = sql_app(connectors(pg, pool_size=4), grants, name="hog",
                  secrets={"orders-pw": PASSWORD}, limits={"timeout_ms": 3000, "pool_size": 4})
    other = sql_app({}, grants, name="other")
    out = hog.call("beginloop", framed("orders", b"\0\0\0\0"))
    count, status = int.from_bytes(out[:4], "little"), int.from_bytes(out[4:], "little",
                                                                      signed=True)
    assert (count, status) == (2, -4)           # max_transactions, then QUOTA
    # Three calls of the hog at once, each holding what it can until its deadline: the
    # plugin's share of the pool (half) is all they get, and the other plugin still queries.
    ended: list[BaseException] = []

    def hold() -> None:
        try:
            hog.call("beginloop", framed("orders", b"\1\0\0\0"))
        except BaseException as exc:
            ended.append(exc)

    spinning = [threading.Thread(target=hold) for _ in range(3)]
    for t in spinning:
        t.start()
    time.sleep(0.3)  # the hogs hold their connections (outcome asserted below, not timed)
    for _ in range(20):
        assert other.rows("orders", "SELECT 1") == [[1]]
    for t in spinning:
        t.join()
    assert [type(e) for e in ended] == [DeadlineExceeded] * 3
    assert hog.app.databases.describe()[0]["in_use"] == 0


def test_read_only_connectors_refuse_writes(sql_app: Callable[..., Db],  # noqa: F811
                                            pg: dict[str, Any]) -> None:
    db = sql_app(connectors(pg, read_only=True), {"sql": {"connectors": ["orders"]}},
                 secrets={"orders-pw": PASSWORD})
    msg = db.refused("execute", framed("orders", b'{"sql": "CREATE TABLE nope (x int)"}'))
    assert msg.startswith("DENIED: connector orders is read-only")


def test_the_pool_survives_a_server_restart(shop: Db, pg: dict[str, Any]) -> None:
    assert shop.rows("orders", "SELECT 1") == [[1]]
    pg["cluster"].halt()
    try:
        assert shop.refused("query", framed("orders", b'{"sql": "SELECT 1"}')).startswith(
            "UNAVAILABLE: connector orders:")
    finally:
        pg["cluster"].resume()
    assert shop.rows("orders", "SELECT 3") == [[3]]


def test_calls_from_threads_share_the_pool(shop: Db) -> None:
    def work() -> None:
        for i in range(25):
            assert shop.rows("orders", "SELECT $1::int", i) == [[i]]

    assert on_threads(work) == []
    stats = shop.app.databases.describe()[0]
    assert stats["in_use"] == 0 and 1 <= stats["idle"] <= 4


def test_a_components_transaction_ends_with_its_call(shop: Db) -> None:
    # The WIT face (omnicore:plugin/sql) over the same backend: a component's call ends in
    # sandbox.component's leave(), which rolls back what the call left open.
    from omnicore.capabilities.sql import for_app
    from omnicore.sandbox.capability import PluginContext
    from omnicore.sandbox.component.hostcalls import enter, leave
    from omnicore.sandbox.pluginlog import PluginLog

    cap = for_app(shop.app)
    wit = {f.name: f.impl for f in cap.wit}
    bound = cap.bind(PluginContext("comp", {"connectors": ["orders"]}, {}, PluginLog("comp")))
    deadline = time.monotonic() + 5
    enter(deadline)
    try:
        tx = wit["begin"](bound, deadline, "orders")["ok"]
        req = json.dumps({"sql": "INSERT INTO items VALUES (9, 'c', 1)", "tx": tx})
        assert json.loads(wit["execute"](bound, deadline, "orders", req)["ok"]) == \
            {"rows_affected": 1}
        assert shop.app.databases.describe()[0]["in_use"] == 1
    finally:
        leave()
    assert shop.app.databases.describe()[0]["in_use"] == 0
    assert _count(shop) == 0
    enter(deadline)
    try:
        tx = wit["begin"](bound, deadline, "orders")["ok"]
        wit["execute"](bound, deadline, "orders", json.dumps(
            {"sql": "INSERT INTO items VALUES (9, 'c', 1)", "tx": tx}))
        assert wit["commit"](bound, deadline, tx) == {"ok": None}
        assert wit["commit"](bound, deadline, tx)["err"]["code"] == "not-found"
    finally:
        leave()
    assert _count(shop) == 1
    assert wit["query"](bound, deadline, "other", '{"sql": "SELECT 1"}') == {
        "err": {"code": "denied", "message": "connector other is not granted"}}
