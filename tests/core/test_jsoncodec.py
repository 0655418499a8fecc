"""omnicore.core.jsoncodec answers what json answers (loads: value or error, exactly), and
dumps differs from json.dumps only in the two documented ways."""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
from typing import Any

import pytest

from omnicore.capabilities import guestjson
from omnicore.core import jsoncodec

# Each one orjson answers differently from json, or not at all, plus plain documents.
TEXTS = [
    b'{"a":1,"a":2}', b"1e400", b"-1e400", b"1e-400", b"[1e308, 2.5e-324]", b'"\\ud800"',
    b'"\\ud83d\\ude00"', b"18446744073709551615", b"18446744073709551616",
    b"-9223372036854775808", b"-9223372036854775809", b"123456789012345678901234567890",
    b'{"n": 99999999999999999999999}', b"9223372036854775808", b"\xef\xbb\xbf{}", b"NaN",
    b"[Infinity]", b"-Infinity", b' [1] ', b'"\x00"', b'"a\\u0000b"', b"1.0", b"-0", b"-0.0",
    b"0.1", b"1E2", b"[" * 5000 + b"]" * 5000, '{"é":"ü"}'.encode(), b'"\xff"', b'{"a":1}x',
    b"true", b"", b"   ", b"[1,]", b"{'a':1}", b'{"a":[1,2,{"b":null}]}', b"\t\n[\r]",
    '"\udc80"'.encode("utf-8", "surrogatepass"), b"\xff\xfe[\x001\x00]\x00",
]


def _outcome(fn: Any, raw: Any) -> tuple[str, str]:
    try:
        value = fn(raw)
    except RecursionError:
        return ("error", "RecursionError")
    except Exception as exc:  # the type and the message must be json's own
        return ("error", f"{type(exc).__name__}: {exc}")
    return ("value", repr(value) + type(value).__name__)


def _texts() -> list[str]:
    out = []
    for t in TEXTS:
        try:
            out.append(t.decode("utf-8", "surrogatepass"))
        except UnicodeDecodeError:
            pass
    return out


@pytest.mark.parametrize("raw", TEXTS + _texts())
def test_loads_answers_exactly_what_json_answers(raw: bytes | str) -> None:
    assert _outcome(jsoncodec.loads, raw) == _outcome(json.loads, raw)


def test_big_integers_keep_their_value() -> None:
    # orjson alone would give floats for these.
    assert jsoncodec.loads(b"18446744073709551616") == 2**64
    assert jsoncodec.loads(b'[-9223372036854775809]') == [-(2**63) - 1]


@pytest.mark.parametrize("raw", [b"NaN", b"[1, -Infinity]", b'{"a": Infinity}'])
def test_guest_json_still_refuses_nan_in_its_own_words(raw: bytes) -> None:
    with pytest.raises(ValueError, match="is not valid JSON"):
        guestjson.loads(raw)


@dataclasses.dataclass
class Point:
    x: int


class Name(str):
    pass


VALUES: list[Any] = [
    {"a": [1, 2.5, None, True, "x"]}, [], {}, "plain", 2**63 - 1, -(2**63), 2**64, -(2**70),
    {1: "int key"}, {None: 1, True: 2, 1.5: 3}, [Name("sub")], {"k": (1, 2)}, 0.1, -0.0, 1e16,
]


@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_dumps_is_the_same_json_value(value: Any) -> None:
    mine = jsoncodec.dumps(value)
    assert json.loads(mine) == json.loads(json.dumps(value, separators=(",", ":")))


@pytest.mark.parametrize("value", [{1: "a"}, 2**64, [Name("s")], {"k": 2**70}], ids=repr)
def test_what_orjson_writes_its_own_way_is_written_by_json(value: Any) -> None:
    assert jsoncodec.dumps(value) == json.dumps(value, separators=(",", ":")).encode()


# Named ids: repr(object()) holds an address, which differs per xdist worker.
@pytest.mark.parametrize("value", [datetime.date(2024, 1, 2), Point(1), {1j: 1}, object()],
                         ids=["date", "dataclass", "complex-key", "object"])
def test_what_json_cannot_write_is_still_a_type_error(value: Any) -> None:
    with pytest.raises(TypeError):
        jsoncodec.dumps(value)


def test_the_two_documented_differences() -> None:
    # UTF-8 instead of \u escapes: the same JSON string.
    assert jsoncodec.dumps("é😀") == '"é😀"'.encode()
    assert json.loads(jsoncodec.dumps("é😀")) == "é😀"
    # NaN and ±Infinity are written as null (json wrote tokens no JSON parser takes).
    assert jsoncodec.dumps([math.nan, math.inf, -math.inf]) == b"[null,null,null]"
    # A string that is not valid Unicode (a lone surrogate) falls back to json's escape.
    assert jsoncodec.dumps("\ud800") == b'"\\ud800"'
