"""SQL values as JSON (specs/abi.md §4.10): parameters in, cells out, the same tags."""

from __future__ import annotations

import datetime as dt
import decimal
from typing import Any

import pytest

from omnicore.egress.db.values import Json, cell, param, params
from omnicore.egress.refused import Refused


def test_parameters_become_driver_values() -> None:
    got = params([None, True, 7, 1.5, "x", {"$bytes": "AAE="}, {"$decimal": "1.50"},
                  {"$timestamp": "2026-11-24T12:00:00Z"}, {"$date": "2026-11-24"},
                  {"$time": "12:00:00"}])
    assert got[:5] == [None, True, 7, 1.5, "x"]
    assert got[5:7] == [b"\0\1", decimal.Decimal("1.50")]
    assert got[7] == dt.datetime(2026, 11, 24, 12, tzinfo=dt.UTC)
    assert got[8:] == [dt.date(2026, 11, 24), dt.time(12)]
    assert isinstance(param({"$json": [1]}, "p"), Json)


@pytest.mark.parametrize(("value", "message"), [
    ({"$foo": 1}, "params[0]: unknown tag $foo"),
    ({"a": 1, "b": 2}, "params[0]: an object or array must be wrapped in $json"),
    ([1, 2], "params[0]: an object or array must be wrapped in $json"),
    ({"$bytes": "%%%"}, "params[0]: bad $bytes"),
    ({"$decimal": "NaN"}, "params[0]: bad $decimal"),
    ({"$timestamp": 5}, "params[0]: $timestamp takes a string"),
    (2**64, "params[0]: integer out of the 64-bit range"),
])
def test_bad_parameters_are_invalid(value: Any, message: str) -> None:
    with pytest.raises(Refused) as info:
        params([value])
    assert info.value.status == "INVALID" and str(info.value).startswith(message)


def test_cells_use_the_same_tags() -> None:
    assert [cell(v) for v in (None, True, 3, "s", b"\0\1", decimal.Decimal("2.5"),
                              dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
                              dt.datetime(2026, 1, 2), dt.date(2026, 1, 2), dt.time(1, 2),
                              {"a": 1}, float("nan"))] == [
        None, True, 3, "s", {"$bytes": "AAE="}, {"$decimal": "2.5"},
        {"$timestamp": "2026-01-02T03:04:05Z"}, {"$timestamp": "2026-01-02T00:00:00"},
        {"$date": "2026-01-02"}, {"$time": "01:02:00"}, {"$json": {"a": 1}}, "nan"]


def test_a_plain_row_with_an_integer_past_64_bits_is_still_written() -> None:
    """Rows of plain cells are written by orjson's own function (sql.PLAIN); what it refuses,
    an integer past 64 bits, is written whole by json, and a converting encoder's own failure
    is not swallowed."""
    from types import SimpleNamespace

    from omnicore.egress.db.sql import PLAIN, SqlBackend, row_encoder

    def run(encode: Any, rows: list[tuple[Any, ...]]) -> bytes:
        backend = SqlBackend.__new__(SqlBackend)
        backend.name = "t"
        backend.connector = SimpleNamespace(max_rows=10, max_result_bytes=1 << 20)
        backend.dialect = SimpleNamespace(
            rows=lambda conn, sql, args, deadline: (b"[]", (r for r in rows), encode))
        out: bytes = backend._statement(None, True, "SELECT", [], 0.0)
        return out

    assert row_encoder([None, None]) is PLAIN
    assert run(PLAIN, [(1, 2**70), ("x", None)]) == \
        b'{"columns":[],"rows":[[1,1180591620717411303424],["x",null]]}'

    def broken(value: Any) -> Any:
        raise TypeError("not this one")

    with pytest.raises(TypeError, match="not this one"):
        run(row_encoder([broken]), [(1,)])
