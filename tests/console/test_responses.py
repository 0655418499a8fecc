"""The console's JSON answers (console/responses.py) are Starlette's bytes, written faster;
the two documented differences are pinned here."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from starlette import responses

from omnicore.console.responses import JSONResponse


class Name(str):
    pass


SAME: list[Any] = [
    {"items": [{"name": "p", "calls": 3, "p50_ms": 0.012, "granted": {"kv": {}}}], "total": 1},
    {"output": "é 😀 \u2028", "encoding": "text", "duration_ms": 0.5}, [], {}, None, True,
    "text", 2**63 - 1, -(2**63), {1: "an int key"}, {"big": 2**64}, [Name("sub")],
    {"nested": [[[{"a": None}]]]}, 0.1, -0.0, 123.25,
]


@pytest.mark.parametrize("content", SAME, ids=repr)
def test_an_answer_is_starlettes_bytes(content: Any) -> None:
    assert JSONResponse(content).body == responses.JSONResponse(content).body


def test_what_starlette_refuses_is_still_refused_or_written_as_null() -> None:
    with pytest.raises(UnicodeEncodeError):
        JSONResponse({"bad": "\ud800"})  # as Starlette: no answer with a lone surrogate
    with pytest.raises(TypeError):
        JSONResponse({"x": object()})
    # The differences: NaN is null (Starlette failed the request), a float may be spelled
    # another way (the same number).
    assert JSONResponse([math.nan, math.inf]).body == b"[null,null]"
    with pytest.raises(ValueError):
        responses.JSONResponse([math.nan])
    for number in (1e16, 1.5e-7):
        assert json.loads(JSONResponse(number).body) == number
        assert json.loads(responses.JSONResponse(number).body) == number
