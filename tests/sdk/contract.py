"""The host's answers as one table (sdk/contract/host.json): loading it and comparing a reply
with a case, for the test of the real host (test_contract_host.py) and of the SDKs' test
hosts (test_contract_fakes.py) alike."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from omnicore.toolchains import locations

__all__ = ["TABLE", "Outcome", "expected", "not_the_hosts", "outcome_of_block", "request",
           "table"]


@cache
def table() -> dict[str, Any]:
    """The case table, as the SDKs (and a wheel) carry it."""
    data: dict[str, Any] = json.loads((locations.sdk_dir("contract") / "host.json").read_text())
    return data


TABLE = table()

#: What a step came to: ``("ok", reply)`` or ``("error", status name)``.
Outcome = tuple[str, Any]


def expected(step: dict[str, Any]) -> Outcome:
    return ("error", step["error"]) if "error" in step else ("ok", step["reply"])


def request(step: dict[str, Any]) -> dict[str, Any]:
    """The redis request a step sends: its ``request``, or ``{"cmd", "args"}`` of its ``do``."""
    raw: dict[str, Any] = step.get("request") or {"cmd": step["do"][0], "args": step["do"][1:]}
    return raw


def not_the_hosts(answer: Any) -> str | None:
    """Why ``answer`` is not shaped as the host's answer to a query, or None."""
    if not isinstance(answer, dict) or not isinstance(answer.get("columns"), list) \
            or not isinstance(answer.get("rows"), list):
        return "a query's answer is {\"columns\": [...], \"rows\": [...]}"
    columns = answer["columns"]
    if not all(isinstance(c, dict) and isinstance(c.get("name"), str)
               and isinstance(c.get("type"), str) for c in columns):
        return "a column is an object {\"name\", \"type\"}"
    if not all(isinstance(r, list) and len(r) == len(columns) for r in answer["rows"]):
        return "a row is an array of one value per column"
    return None


def outcome_of_block(failed: bool, text: str) -> Outcome:
    """A §3.3 answer as an outcome: an error's status name (the text before ``:``), or the
    reply's JSON."""
    if failed:
        return "error", text.split(":", 1)[0]
    return "ok", json.loads(text)
