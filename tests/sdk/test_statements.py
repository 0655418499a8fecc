"""SQL statements are the plugin's constants (specs/abi.md §4.10.1): ``omnicore build`` and
``omnicore test`` refuse a Python or JS/TS plugin whose statement is built from a value (the
f-string of issue 43 whose ``x' or '1'='1`` returned every row), and pass a literal; the JS
tag turns each interpolated value into a parameter, run under Node with the SDK's test host."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

OMNICORE = Path(sys.executable).with_name("omnicore")

pytestmark = pytest.mark.timeout(900)


def omnicore(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(OMNICORE), *map(str, args)], cwd=cwd, env=dict(os.environ),
                          capture_output=True, text=True, timeout=900)


PYTHON_FSTRING = '''\
from omnicore_plugin import json_handler, sql


@json_handler
def find(request):
    db = sql.connect("orders")
    rows = db.query(f"select sku from stock where name = '{request['name']}'")
    return [r.as_dict() for r in rows]
'''

PYTHON_LITERAL = '''\
from omnicore_plugin import json_handler, sql

FIND = "select sku from stock where name = $1"


@json_handler
def find(request):
    db = sql.connect("orders")
    rows = db.query(FIND, [request["name"]])
    return [r.as_dict() for r in rows]
'''

PYTHON_TESTS = '''\
import json

import plugin  # noqa: F401 - registers its handlers
from omnicore_plugin.testing import TestHost


def test_the_name_travels_as_a_parameter():
    name = "x' or '1'='1"
    with TestHost(sql=lambda call: [{"sku": "A-1"}]) as host:
        assert json.loads(host.call("find", json.dumps({"name": name}).encode())) == [
            {"sku": "A-1"}]
        assert host.sql_calls[-1].sql == "select sku from stock where name = $1"
        assert host.sql_calls[-1].params == [name]
'''


def python_project(root: Path, plugin: str) -> Path:
    root.mkdir()
    (root / "plugin.py").write_text(plugin, encoding="utf-8")
    (root / "test_plugin.py").write_text(PYTHON_TESTS, encoding="utf-8")
    return root


def test_omnicore_build_and_test_refuse_a_python_f_string_statement(tmp_path: Path) -> None:
    src = python_project(tmp_path / "finder", PYTHON_FSTRING)
    built = omnicore("build", src, "--out", tmp_path / "out", cwd=tmp_path)
    assert built.returncode == 1, built.stdout + built.stderr
    said = built.stdout + built.stderr
    assert "plugin.py:7: the statement of query() is an f-string" in said, said
    assert "put every value in params" in said, said
    assert not (tmp_path / "out" / "finder.wasm").exists()
    tested = omnicore("test", src, cwd=tmp_path)
    assert tested.returncode == 1, tested.stdout + tested.stderr
    assert "plugin.py:7: the statement of query() is an f-string" in tested.stderr, tested.stderr
    assert "passed" not in tested.stdout  # pytest never ran


def test_omnicore_test_and_build_pass_a_python_constant_statement(tmp_path: Path) -> None:
    src = python_project(tmp_path / "finder", PYTHON_LITERAL)
    tested = omnicore("test", src, cwd=tmp_path)
    assert tested.returncode == 0 and "1 passed" in tested.stdout, tested.stdout + tested.stderr
    built = omnicore("build", src, "--out", tmp_path / "out", cwd=tmp_path)
    assert built.returncode == 0, built.stdout + built.stderr
    assert (tmp_path / "out" / "finder.wasm").is_file()


JS_PLUGIN = """import { sql } from "omnicore";

const FIND = "select sku from stock where name = $1";

export function find(input) {
  return sql.connect("orders").query(FIND, [input.name]).rows;
}

export function tagged(input) {
  const db = sql.connect("orders");
  db.query`select sku from stock where name = ${input.name} and qty > ${input.min}`;
  db.transaction((tx) =>
    tx.execute`update stock set qty = ${input.min} where name = ${input.name}`);
  return sql.connect("inventory", { placeholders: "?" })
    .query`select sku from stock where name = ${input.name}`.rows;
}
"""

JS_TESTS = """import assert from "node:assert/strict";
import { test } from "node:test";
import { TestHost, useTestHost } from "omnicore/testing";
import { find, tagged } from "./plugin.js";

test("a tag makes each value a parameter, never text", () => {
  // inventory is a MySQL connector (its statements judged by MariaDB's grammar), as the
  // operator's connectors.inventory.kind would say.
  const host = useTestHost(new TestHost({ sqlKinds: { inventory: "mysql" }, sql: (call) =>
    (call.query ? { rows: [{ sku: "A-1" }] } : { rows_affected: 1 }) }));
  const name = "x' or '1'='1";
  assert.deepEqual(tagged({ name, min: 2 }), [{ sku: "A-1" }]);
  // The fake records the transaction's BEGIN and COMMIT too.
  const ran = host.sqlCalls.filter((c) => !["BEGIN", "COMMIT"].includes(c.sql));
  assert.deepEqual(ran.map((c) => [c.sql, c.params]), [
    ["select sku from stock where name = $1 and qty > $2", [name, 2]],
    ["update stock set qty = $1 where name = $2", [2, name]],
    ["select sku from stock where name = ?", [name]],
  ]);
  assert.notEqual(ran[1].tx ?? null, null);
  find({ name });
  assert.deepEqual(host.sqlCalls.at(-1).params, [name]);
});
"""

JS_BAD = """import { sql } from "omnicore";

export function find(input) {
  const db = sql.connect("orders");
  return db.query(`select sku from stock where name = '${input.name}'`).rows;
}
"""


def test_the_js_tag_turns_values_into_params_and_omnicore_test_runs_it(tmp_path: Path) -> None:
    src = tmp_path / "finder"
    src.mkdir()
    (src / "plugin.js").write_text(JS_PLUGIN, encoding="utf-8")
    (src / "plugin.test.js").write_text(JS_TESTS, encoding="utf-8")
    tested = omnicore("test", src, cwd=tmp_path)
    assert tested.returncode == 0 and "# pass 1" in tested.stdout, tested.stdout + tested.stderr


def test_omnicore_build_and_test_refuse_a_js_template_statement(tmp_path: Path) -> None:
    src = tmp_path / "finder"
    src.mkdir()
    (src / "plugin.js").write_text(JS_BAD, encoding="utf-8")
    (src / "plugin.test.js").write_text(JS_TESTS, encoding="utf-8")
    expected = "plugin.js:5: the statement of query() is a template literal with ${...}"
    built = omnicore("build", src, "--out", tmp_path / "out", cwd=tmp_path)
    assert built.returncode == 1 and expected in built.stdout + built.stderr, \
        built.stdout + built.stderr
    tested = omnicore("test", src, cwd=tmp_path)
    assert tested.returncode == 1 and expected in tested.stderr, tested.stderr
