"""Statement steps (specs/workflows.md §4.1): ``uses: connector:NAME/query`` and ``/execute``
on a real PostgreSQL (tests/pgcluster.py), parameters from the run's inputs."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest

from omnicore import OmniApp
from omnicore.workflows.definition import parse
from omnicore.workflows.errors import DefinitionError

FLOW = """\
format: omniflow/v1
name: restock
steps:
  - id: add
    uses: connector:orders/execute
    with:
      sql: "INSERT INTO stock (sku, qty) VALUES ($1, $2)"
      params: ["${{ inputs.sku }}", "${{ inputs.qty }}"]
  - id: check
    uses: connector:orders/query
    needs: [add]
    with:
      sql: "SELECT sku, qty FROM stock WHERE sku = $1"
      params: ["${{ inputs.sku }}"]
outputs: {qty: "${{ steps.check.output.rows[0][1] }}"}
"""


def test_statement_steps_take_parameters_from_inputs(wf_app: Callable[..., OmniApp],
                                                     pg_url: str) -> None:
    url = pg_url.replace("omnicore:omnicore@", "omnicore@")
    app = wf_app({"restock.yaml": FLOW}, extra=f"""\
        connectors:
          orders: {{kind: postgres, url: "{url}", secret: orders-pw,
                    statements: {{allow: [create]}}}}
        """)
    app.secrets.set("orders-pw", "omnicore")
    backend = app.databases.backend("orders", ("postgres",))
    backend.run("t", False, "CREATE TABLE stock (sku text PRIMARY KEY, qty int)", [],
                time.monotonic() + 5)
    evil = "x'); DROP TABLE stock; --"
    run = app.workflows.wait(app.workflows.start("restock", {"sku": evil, "qty": 4}).id, 30)
    assert run.state == "succeeded", run.error
    assert run.outputs == {"qty": 4}
    row = app.workflows.store.step(run.id, "check")
    assert row is not None and row.output["rows"] == [[evil, 4]]
    # A duplicate key is the database's own message, one line, and not retried.
    run = app.workflows.wait(app.workflows.start("restock", {"sku": evil, "qty": 1}).id, 30)
    row = app.workflows.store.step(run.id, "add")
    assert run.state == "failed" and row is not None and row.attempt == 1
    assert (row.error or "").startswith("connector orders: INVALID: connector orders: "
                                        "duplicate key")
    assert "omnicore@" not in json.dumps(row.as_dict())


def test_a_statement_step_needs_its_sql_and_no_http_keys() -> None:
    bad = FLOW.replace('    with:\n      sql: "INSERT',
                       '    path: /x\n    with:\n      sql: "INSERT')
    with pytest.raises(DefinitionError, match="'path' belongs to HTTP connector steps only"):
        parse(bad)
    nowith = ("format: omniflow/v1\nname: x\nsteps:\n"
              "  - id: a\n    uses: connector:orders/query\n")
    with pytest.raises(DefinitionError, match="a statement step needs with"):
        parse(nowith)
