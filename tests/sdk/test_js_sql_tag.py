"""The JS SDK's SQL tag (``db.query`... ${v}` ``, docs/guides/writing-plugins/js.md) in a
built plugin on the real JS runtime (QuickJS-ng), against a real PostgreSQL
(tests/pgcluster.py): each value a parameter, the text the literal parts.

tests/sdk/test_statements.py runs the tag under Node, whose template objects are frozen;
QuickJS-ng's are sealed with a writable ``length``, so a check for frozen read every tag in a
built plugin as a plain array and threw "the statement must be a string constant"."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from omnicore.app import OmniApp
from omnicore.toolchains import build
from tests.pgcluster import Cluster

pytestmark = pytest.mark.timeout(600)

PLUGIN = """import { sql } from "omnicore";

export function find(input) {
  const req = JSON.parse(input);
  const db = sql.connect("orders");
  db.transaction((tx) =>
    tx.execute`update stock set qty = ${req.qty} where sku = ${req.sku}`);
  return db.query`select sku, qty from stock where sku = ${req.sku} and qty >= ${0}`.rows;
}
"""

MANIFEST = """[plugin]
name = "tagged"
version = "0.1.0"
handlers = ["find"]
"""


def test_the_tag_runs_in_a_built_plugin(tmp_path: Path, make_app: Callable[..., OmniApp],
                                         pg_cluster: Cluster, pg_url: str) -> None:
    db = pg_url.rsplit("/", 1)[1]
    pg_cluster.psql("SET ROLE omnicore; CREATE TABLE stock (sku text PRIMARY KEY, qty int);"
                    "INSERT INTO stock VALUES ('A-1', 12), ('B-2', 0)", db=db)
    src = tmp_path / "tagged"
    src.mkdir()
    (src / "plugin.js").write_text(PLUGIN)
    (src / "omnicore.toml").write_text(MANIFEST)
    wasm = build(src, tmp_path / "out")

    app = make_app(builtin_extensions=None, overrides={
        "sandbox": {"watch": False},
        "connectors": {"orders": {"kind": "postgres",
                                  "url": pg_url.replace("omnicore:omnicore@", "omnicore@"),
                                  "secret": "orders-db-password"}}})
    app.start()
    app.secrets.set("orders-db-password", "omnicore")
    app.plugins.load(wasm, grants={"sql": {"connectors": ["orders"]}},
                     limits={"timeout_ms": 10000})

    # A name that would be SQL as text is a value as a parameter.
    assert app.plugins.call_json("tagged", "find", {"sku": "A-1' or '1'='1", "qty": 1}) == []
    assert app.plugins.call_json("tagged", "find", {"sku": "B-2", "qty": 5}) == [
        {"sku": "B-2", "qty": 5}]
    assert pg_cluster.psql("SELECT qty FROM stock WHERE sku = 'B-2'", db=db).strip() == "5"
