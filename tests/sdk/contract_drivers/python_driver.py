"""The Python SDK's TestHost through the contract's requests (tests/sdk/test_contract_fakes.py):
a plugin's redis and sql calls as omnicore_plugin's binding makes them, through the door to
omnicore's test host (its capability code: the answers printed are the host's own)."""

from __future__ import annotations

import json
import sys
from typing import Any

from omnicore_plugin.testing import TestHost


def _typed(answer: dict[str, Any]) -> bool:
    """Whether ``answer`` can be given to the TestHost at all: it takes Python values (column
    names and rows) and makes the JSON itself, so a wrong column shape cannot be given."""
    return "columns" in answer and all(
        isinstance(c, dict) and {"name", "type"} <= c.keys() for c in answer["columns"]) and all(
        isinstance(r, list) for r in answer.get("rows", []))


def main(path: str) -> None:
    host = TestHost()
    with open(path) as lines:
        for line in lines:
            req = json.loads(line)
            if "reset" in req:
                host = TestHost()
                continue
            if "sql" in req:
                answer = req["sql"]
                if not _typed(answer):
                    print("typed")
                    continue
                names = [c["name"] for c in answer["columns"]]
                host = TestHost(sql=lambda _call, n=names, a=answer: (n, a["rows"]))
                call = ("sql", "query", ("db", json.dumps({"sql": "SELECT"})))
            else:
                call = ("redis", "command", ("cache", json.dumps(req["redis"])))
            answer = host._native.call(*call)
            if "err" in answer:  # the host's refusal: what the plugin's call raises
                err = answer["err"]
                code = err["code"].upper().replace("-", "_")
                print("error", f"{code}: {err['message']}".replace("\n", " "))
            else:
                print("ok", answer["ok"])


if __name__ == "__main__":
    main(sys.argv[1])
