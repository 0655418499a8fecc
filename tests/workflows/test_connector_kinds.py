"""A connector step fits its connector's kind: an HTTP request (``connector:NAME``) only on an
HTTP connector, a statement (``connector:NAME/query``, ``/execute``) only on a postgres or
mysql one, nothing on redis. The validator says so with what to write instead, instead of
accepting the step and failing the run with "the app has no connector"."""

from __future__ import annotations

import textwrap
from pathlib import Path

from omnicore.workflows.definition import parse
from omnicore.workflows.references import check_references
from tests.workflows.test_app_references import omnicore

KINDS = {"api": "http", "orders": "postgres", "stock": "mysql", "cache": "redis"}
FLOW = textwrap.dedent("""\
    format: omniflow/v1
    name: shop
    steps:
      - {id: fetch, uses: "connector:api", path: /items}
      - {id: rows, uses: "connector:orders/query", with: {sql: "SELECT 1"}}
      - {id: count, uses: "connector:stock/execute", with: {sql: "DELETE FROM t"}}
      - {id: http_on_db, uses: "connector:orders", path: /}
      - {id: http_on_redis, uses: "connector:cache", method: POST, path: /}
      - {id: sql_on_http, uses: "connector:api/query", with: {sql: "SELECT 1"}}
      - {id: sql_on_redis, uses: "connector:cache/execute", with: {sql: "SET a 1"}}
    """)


def test_each_connector_step_is_checked_against_its_connectors_kind() -> None:
    found = [(p.path, p.message) for p in check_references(
        parse(FLOW), plugins=None, connectors=KINDS, workflows=["shop"])]
    assert found == [
        ("steps[3].uses", "step 'http_on_db': connector 'orders' is a postgres database, not "
                          "an HTTP API: run a statement with uses: connector:orders/query "
                          "(rows) or connector:orders/execute (changes) and with: "
                          "{sql: ..., params: [...]}"),
        ("steps[4].uses", "step 'http_on_redis': connector 'cache' is a redis database, which "
                          "a workflow step cannot use (steps send HTTP requests and "
                          "postgres/mysql statements): call a plugin granted redis on it "
                          "instead"),
        ("steps[5].uses", "step 'sql_on_http': connector 'api' is an HTTP connector, and "
                          "/query runs a statement on a postgres or mysql connector: for an "
                          "HTTP request write uses: connector:api with a path"),
        ("steps[6].uses", "step 'sql_on_redis': connector 'cache' is a redis database, which "
                          "a workflow step cannot use (steps send HTTP requests and "
                          "postgres/mysql statements): call a plugin granted redis on it "
                          "instead"),
    ]


def test_validate_with_the_app_refuses_an_http_step_on_a_database_connector(
        tmp_path: Path) -> None:
    app = tmp_path / "app"
    (app / "plugins").mkdir(parents=True)
    (app / "omnicore.yaml").write_text(textwrap.dedent("""\
        name: shop
        data_dir: data
        plugins_dir: plugins
        console: {enabled: false}
        connectors:
          api: {base_url: "http://127.0.0.1:9"}
          orders: {kind: postgres, url: "postgres://shop@127.0.0.1:9/shop", secret: pw}
          cache: {kind: redis, url: "redis://127.0.0.1:9"}
        """))
    flow = tmp_path / "restock.yaml"
    flow.write_text("format: omniflow/v1\nname: restock\nsteps:\n"
                    "  - {id: load, uses: 'connector:orders', path: /}\n")
    done = omnicore("workflows", "validate", str(flow), "--app", str(app), cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    assert done.stderr.splitlines() == [
        f"{flow}: error: line 4: steps[0].uses: step 'load': connector 'orders' is a postgres "
        "database, not an HTTP API: run a statement with uses: connector:orders/query (rows) "
        "or connector:orders/execute (changes) and with: {sql: ..., params: [...]}"]
    flow.write_text("format: omniflow/v1\nname: restock\nsteps:\n"
                    "  - {id: load, uses: 'connector:orders/query', with: {sql: 'SELECT 1'}}\n")
    done = omnicore("workflows", "validate", str(flow), "--app", str(app), cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr
