"""The SDKs' database connector wrappers (``omnicore:sql``, ``omnicore:redis``; specs/abi.md
§4.10-4.11): each SDK's wrapper, built into a real plugin with the real toolchain, imports
exactly the §4.10/§4.11 functions with their ABI types, and each SDK's test host fakes them
(a SQL fake answering the test's canned rows, an in-memory Redis with the host's prefix,
command list and statuses) in the SDK's own test runner.

Rust's and Go's run on omnicore's test host (the host's sql and redis capabilities over its
fakes) in ``omnicore test`` (tests/sdk/test_rust.py and test_go.py run the SDKs' and the
examples' tests); the JS one and Python's (the same test host, in this process) run here.
The example plugins against real servers: tests/test_stock.py, tests/test_ratelimit.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from omnicore.sandbox import PluginModule, SandboxEngine
from omnicore.toolchains import build, js, python, scaffold, unit_tests

I32, I64 = "i32", "i64"
#: Every function of the two namespaces, with its type (§4.10, §4.11).
CONNECTOR_IMPORTS = {
    ("omnicore:sql", "query"): ((I32, I32, I32, I32), (I64,)),
    ("omnicore:sql", "execute"): ((I32, I32, I32, I32), (I64,)),
    ("omnicore:sql", "begin"): ((I32, I32), (I64,)),
    ("omnicore:sql", "commit"): ((I64,), (I32,)),
    ("omnicore:sql", "rollback"): ((I64,), (I32,)),
    ("omnicore:redis", "command"): ((I32, I32, I32, I32), (I64,)),
}

#: A handler per SDK that reaches every wrapped function: query, execute, a transaction that
#: commits and one that rolls back, and a Redis command. ``(file, source)``.
PROBES = {
    "rust": ("src/lib.rs", r"""
use omnicore::{handler, redis, sql, Error};

fn probe(input: &[u8]) -> Result<Vec<u8>, Error> {
    let db = sql::connect("orders");
    let sku = String::from_utf8_lossy(input).into_owned();
    let rows = db.query("select qty from stock where sku = $1", &[sku.as_str().into()])?;
    let tx = db.transaction()?;
    tx.execute("update stock set qty = qty - 1 where sku = $1", &[sku.as_str().into()])?;
    tx.commit()?;
    db.transaction()?.rollback()?;
    let hits = redis::connect("cache").incr("hits")?;
    Ok(format!("{} {}", rows.len(), hits).into_bytes())
}

handler!(probe => probe);
"""),
    "go": ("main.go", """
package main

import (
	"strconv"

	"omnicore.dev/sdk"
)

func probe(input []byte) ([]byte, error) {
	db := omnicore.SQL.Connect("orders")
	rows, err := db.Query("select qty from stock where sku = $1", string(input))
	if err != nil {
		return nil, err
	}
	tx, err := db.Begin()
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	_, err = tx.Execute("update stock set qty = qty - 1 where sku = $1", string(input))
	if err != nil {
		return nil, err
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	hits, err := omnicore.Redis.Connect("cache").Incr("hits")
	return []byte(strconv.Itoa(rows.Len()) + " " + strconv.FormatInt(hits, 10)), err
}

//go:wasmexport probe
func probeExport(ptr, size uint32) uint64 { return omnicore.Handle(ptr, size, probe) }

func main() {}
"""),
    "c": ("plugin.c", r"""
#include "omnicore.h"

OMNI_HANDLER(probe, input) {
    omni_buf params = {0};
    omni_buf_puts(&params, "[");
    omni_buf_json_string(&params, (const char *)input.ptr, input.len);
    omni_buf_puts(&params, "]");
    omni_data rows = omni_sql_query("orders", "select qty from stock where sku = $1",
                                    params.ptr);
    int64_t tx = omni_sql_begin("orders");
    omni_data done = omni_sql_execute_tx("orders", tx,
                                         "update stock set qty = qty - 1 where sku = $1",
                                         params.ptr);
    omni_buf_free(&params);
    omni_data_free(&done);
    if (omni_sql_commit(tx) != OMNI_OK) omni_sql_rollback(tx);
    int64_t hits = 0;
    int32_t status = omni_redis_incrby("cache", "hits", 1, &hits);
    if (rows.status != OMNI_OK) return omni_error("%s", rows.ptr ? rows.ptr : "query failed");
    omni_data_free(&rows);
    return status == OMNI_OK ? omni_ok_str("ok") : omni_error("incr failed");
}
"""),
    "js": ("plugin.js", """
import { redis, sql } from "omnicore";

export function probe(input) {
  const db = sql.connect("orders");
  const { rows } = db.query("select qty from stock where sku = $1", [input]);
  db.transaction((tx) => tx.execute("update stock set qty = qty - 1 where sku = $1", [input]));
  db.begin().rollback();
  return { rows: rows.length, hits: redis.connect("cache").incr("hits") };
}
"""),
}


@pytest.mark.parametrize("lang", sorted(PROBES))
def test_each_sdk_imports_the_connector_functions_with_their_abi_types(
        lang: str, engine: SandboxEngine, out_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / f"conn-{lang}"
    scaffold(src, f"conn-{lang}", lang)
    for test in [*src.glob("*_test.go"), *src.glob("*.test.js")]:
        test.unlink()  # the scaffold's tests are for its greet example
    name, source = PROBES[lang]
    (src / name).write_text(source.lstrip(), encoding="utf-8")
    # The scaffold's manifest names its greet handler; the probe has only probe.
    (src / "omnicore.toml").write_text(f'[plugin]\nname = "conn-{lang}"\n')
    module = PluginModule.load(engine, build(src, out_dir))
    got = {(i.module, i.name): i.signature for i in module.imports
           if i.module in ("omnicore:sql", "omnicore:redis")}
    assert got == CONNECTOR_IMPORTS
    assert {"sql", "redis"} <= module.requested
    assert list(module.handlers) == ["probe"]


def test_a_js_plugin_that_does_not_import_them_requests_neither(
        engine: SandboxEngine, out_dir: Path, tmp_path: Path) -> None:
    # The runtime holds every import; the build drops the namespaces the source never names.
    src = tmp_path / "plain.js"
    src.write_text('import { kv } from "omnicore";\nexport function n() { return kv.incr("n"); }\n')
    module = PluginModule.load(engine, build(src, out_dir, name="plain"))
    assert not {"sql", "redis"} & module.requested


def test_the_python_component_imports_the_sql_and_redis_interfaces(tmp_path: Path) -> None:
    src = tmp_path / "conn-python"
    scaffold(src, "conn-python", "python")
    (src / "test_plugin.py").unlink()
    (src / "plugin.py").write_text(PYTHON_PLUGIN, encoding="utf-8")
    assert python.used_capabilities(src) == ["log", "sql", "redis"]
    wasm = build(src, tmp_path / "out")
    tool = shutil.which("wasm-tools") or str(Path(sys.executable).parent / "wasm-tools")
    wit = subprocess.run([tool, "component", "wit", str(wasm)], capture_output=True,
                         text=True, timeout=120, check=True).stdout
    imported = set(re.findall(r"import omnicore:plugin/([a-z-]+)", wit))
    assert {"sql", "redis"} <= imported, wit


PYTHON_PLUGIN = '''\
from omnicore_plugin import json_handler, redis, sql


@json_handler
def check(request):
    rows = sql.connect("orders").query("select sku, qty from stock where sku = $1",
                                       [request["sku"]])
    return {"qty": rows[0]["qty"], "hits": redis.connect("cache").incr("hits")}
'''

PYTHON_TESTS = '''\
import datetime
import decimal

import pytest

import plugin  # noqa: F401 - registers its handlers
from omnicore_plugin import HostError, redis, sql
from omnicore_plugin.testing import TestHost


def test_a_handler_reads_canned_rows_and_counts_in_the_fake_redis():
    with TestHost(sql=lambda call: [{"sku": call.params[0], "qty": 3}]) as host:
        assert host.call("check", b'{"sku": "A-1"}') == b'{"qty":3,"hits":1}'
        assert host.sql_calls[0].sql == "select sku, qty from stock where sku = $1"
        assert host.sql_calls[0].params == ["A-1"]
        assert list(host.redis.data) == [b"hits"]  # keys as the plugin names them


def test_typed_values_round_trip_and_refusals_carry_their_code():
    def answer(call):
        return (["when", "price", "doc", "blob"], [call.params]) if call.query else 2

    with TestHost(sql=answer):
        db = sql.connect("orders")
        when = datetime.datetime(2026, 11, 24, 12, 0, tzinfo=datetime.timezone.utc)
        row = db.query("select $1, $2, $3, $4",
                       [when, decimal.Decimal("2.50"), sql.Json({"a": 1}), b"\\x00\\xff"])[0]
        assert row["when"] == when and row["price"] == decimal.Decimal("2.50")
        assert row["doc"] == sql.Json({"a": 1}) and row[3] == b"\\x00\\xff"
        assert db.execute("delete from t").rows_affected == 2
        with pytest.raises(HostError) as info:
            db.query("select $1", [{"a": 1}])
        assert info.value.code == "INVALID"


def test_transactions_commit_or_roll_back_with_the_block():
    with TestHost(sql=lambda call: 1) as host:
        db = sql.connect("orders")
        with db.transaction() as tx:
            tx.execute("update stock set qty = qty - 1 where sku = $1", ["A-1"])
        with pytest.raises(ValueError):
            with db.transaction() as tx:
                tx.execute("delete from stock")
                raise ValueError("changed my mind")
        tx = db.begin()
        tx.rollback()
        tx.rollback()  # nothing to do twice
        with pytest.raises(HostError) as info:
            tx.commit()
        assert info.value.code == "NOT_FOUND"
        assert [(c.sql, c.tx) for c in host.sql_calls] == [
            ("BEGIN", 1), ("update stock set qty = qty - 1 where sku = $1", 1), ("COMMIT", 1),
            ("BEGIN", 2), ("delete from stock", 2), ("ROLLBACK", 2),
            ("BEGIN", 3), ("ROLLBACK", 3)]
    with TestHost():
        with pytest.raises(HostError) as info:
            sql.connect("orders").query("select 1")
        assert info.value.code == "UNAVAILABLE" and "no sql function" in info.value.detail


def test_the_fake_redis_keeps_keys_under_the_prefix_and_refuses_like_the_host():
    with TestHost() as host:
        cache = redis.connect("cache")
        assert cache.get("k") is None
        assert cache.incr("hits") == 1 and cache.incrby("hits", 4) == 5
        assert cache.expire("hits", 60) and cache.ttl("hits") == 60
        cache.set("g", "hi", ex=300)
        assert cache.get("g") == "hi" and host.redis.ttl("g") == 300
        assert cache.hset("h", "a", "1") == 1 and cache.hgetall("h") == {"a": "1"}
        assert cache.hget("h", "a") == "1"
        cache.rpush("q", "a", "b")
        cache.lpush("q", "z")
        assert cache.lrange("q", 0, -1) == ["z", "a", "b"]
        assert cache.sadd("s", "x", "y", "x") == 2 and cache.srem("s", "y") == 1
        assert cache.smembers("s") == {"x"}
        assert cache.delete("g", "nope") == 1
        cache.publish("news", "hello")
        assert sorted(host.redis.data) == [b"h", b"hits", b"q", b"s"]
        assert host.redis.value("hits") == b"5"
        assert host.redis.published == [(b"news", b"hello")] and host.events == []
        assert cache.command("HINCRBY", "h", "a", 2) == 3
        with pytest.raises(HostError) as info:
            cache.command("FLUSHALL")
        assert info.value.code == "DENIED"
        with pytest.raises(HostError) as info:
            cache.incr("s")
        assert info.value.code == "INVALID" and "WRONGTYPE" in info.value.detail
'''


def test_python_test_host_fakes_sql_and_redis(tmp_path: Path) -> None:
    (tmp_path / "plugin.py").write_text(PYTHON_PLUGIN)
    (tmp_path / "test_plugin.py").write_text(PYTHON_TESTS)
    tests = unit_tests(tmp_path)
    done = subprocess.run(tests.argv, env=tests.env, cwd=tests.cwd, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0 and "4 passed" in done.stdout, done.stdout + done.stderr


JS_TESTS = """import assert from "node:assert/strict";
import { test } from "node:test";
import { TestHost, useTestHost } from "omnicore/testing";
import { redis, sql } from "omnicore";

const code = (fn) => { try { fn(); return "ok"; } catch (e) { return e.code ?? e.message; } };

test("sql answers the test's rows and records each statement", () => {
  const host = useTestHost(new TestHost({ sql: (call) => (call.query
    ? { rows: [{ sku: call.params[0], qty: 3, price: sql.decimal("2.50"),
                 photo: new Uint8Array([0, 255]) }] }
    : { rows_affected: 1, last_insert_id: 7 }) }));
  const db = sql.connect("orders");
  const got = db.query("select sku, qty, price, photo from stock where sku = $1", ["A-1"]);
  assert.deepEqual(got.columns.map((c) => c.name), ["sku", "qty", "price", "photo"]);
  assert.deepEqual(got.rows[0],
    { sku: "A-1", qty: 3, price: "2.50", photo: new Uint8Array([0, 255]) });
  assert.deepEqual(got.values[0][0], "A-1");
  const done = db.transaction((tx) => tx.execute("insert into t values ($1, $2, $3)",
    [null, sql.json({ a: 1 }), new Date(Date.UTC(2026, 10, 24))]));
  assert.deepEqual(done, { rows_affected: 1, last_insert_id: 7 });
  assert.throws(() => db.transaction((tx) => {
    tx.execute("delete from t");
    throw new Error("boom");
  }), /boom/);
  assert.deepEqual(host.sqlCalls.map((c) => c.sql), [
    "select sku, qty, price, photo from stock where sku = $1", "BEGIN",
    "insert into t values ($1, $2, $3)", "COMMIT", "BEGIN", "delete from t", "ROLLBACK"]);
  assert.deepEqual(host.sqlCalls[2].params,
    [null, { $json: { a: 1 } }, { $timestamp: "2026-11-24T00:00:00Z" }]);
  assert.equal(code(() => db.query("select $1", [{ a: 1 }])), "INVALID");
  useTestHost(new TestHost());
  assert.equal(code(() => db.query("select 1")), "UNAVAILABLE");
});

test("redis is an in-memory server under the plugin's prefix", () => {
  const host = useTestHost(new TestHost());
  const cache = redis.connect("cache");
  assert.equal(cache.get("hits"), null);
  assert.equal(cache.incr("hits"), 1);
  assert.equal(cache.incrby("hits", 4), 5);
  assert.equal(cache.expire("hits", 60), true);
  assert.equal(cache.ttl("hits"), 60);
  cache.set("greeting", "hi", { ex: 300 });
  assert.equal(cache.get("greeting"), "hi");
  assert.equal(cache.hset("h", "a", "1"), 1);
  assert.deepEqual(cache.hgetall("h"), { a: "1" });
  assert.equal(cache.hget("h", "a"), "1");
  cache.rpush("q", "a", "b");
  cache.lpush("q", "z");
  assert.deepEqual(cache.lrange("q", 0, -1), ["z", "a", "b"]);
  assert.equal(cache.sadd("s", "x", "y", "x"), 2);
  assert.equal(cache.srem("s", "y"), 1);
  assert.deepEqual(cache.smembers("s"), ["x"]);
  assert.equal(cache.del("greeting", "nope"), 1);
  cache.publish("news", "hello");
  assert.deepEqual(host.redisKeys(), ["omnicore:plugin:h", "omnicore:plugin:hits",
    "omnicore:plugin:q", "omnicore:plugin:s"]);
  assert.equal(host.events[0].topic, "redis:omnicore:plugin:news");
  assert.equal(cache.command("HINCRBY", "h", "a", 2), 3);
  assert.equal(code(() => cache.command("FLUSHALL")), "DENIED");
  assert.equal(code(() => cache.incr("s")), "INVALID");
});
"""


def test_node_test_host_fakes_sql_and_redis(tmp_path: Path) -> None:
    (tmp_path / "plugin.js").write_text("export const x = 1;\n")
    (tmp_path / "plugin.test.js").write_text(JS_TESTS)
    tests = js.unit_tests(tmp_path)
    done = subprocess.run(tests.argv, env=tests.env, cwd=tests.cwd, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0 and "# pass 2" in done.stdout, done.stdout + done.stderr
