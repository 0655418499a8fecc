"""SQL values as JSON (specs/abi.md §4.10), both ways, for PostgreSQL and MySQL alike.

A parameter is JSON: ``null``, booleans, integers, floats and strings as themselves; other
types as an object of one tag (``{"$bytes": base64}``, ``{"$json": any}``,
``{"$timestamp": RFC 3339}``, ``{"$date": ...}``, ``{"$time": ...}``, ``{"$decimal": text}``).
A plain object or array is refused: a value never becomes statement text, and a JSON
document must say it is one. Row cells come back the same way.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import decimal
import json
import uuid
from collections.abc import Callable
from typing import Any

from omnicore.egress.refused import Refused

__all__ = ["Json", "cell", "param", "params"]

_INT64 = (-(1 << 63), (1 << 63) - 1)
_SELF = frozenset({bool, float, str})


class Json:
    """A ``$json`` parameter: the driver sends it as JSON text (jsonb/json on PostgreSQL)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def text(self) -> str:
        return json.dumps(self.value, separators=(",", ":"), ensure_ascii=False)


def _timestamp(text: str) -> dt.datetime:
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z")
                                      else text)
    return value


def _decimal(text: str) -> decimal.Decimal:
    value = decimal.Decimal(text)
    if not value.is_finite():
        raise ValueError("not a finite decimal")
    return value


_TAGS: dict[str, Callable[[Any], Any]] = {
    "$bytes": lambda v: base64.b64decode(v, validate=True),
    "$json": Json,
    "$timestamp": _timestamp,
    "$date": dt.date.fromisoformat,
    "$time": dt.time.fromisoformat,
    "$decimal": _decimal,
}
_TEXT_TAGS = frozenset(t for t in _TAGS if t != "$json")


def param(value: Any, where: str) -> Any:
    """One JSON parameter as the Python value a driver sends; Refused INVALID naming it."""
    kind = type(value)
    if value is None or kind in (bool, float, str):
        return value
    if kind is int:
        if not _INT64[0] <= value <= _INT64[1]:
            raise Refused("INVALID", f"{where}: integer out of the 64-bit range")
        return value
    if kind is dict and len(value) == 1:
        (tag, inner), = value.items()
        convert = _TAGS.get(tag)
        if convert is None:
            raise Refused("INVALID", f"{where}: unknown tag {str(tag)[:40]}")
        if tag in _TEXT_TAGS and not isinstance(inner, str):
            raise Refused("INVALID", f"{where}: {tag} takes a string")
        try:
            return convert(inner)
        except (ValueError, TypeError, decimal.InvalidOperation, binascii.Error) as exc:
            raise Refused("INVALID", f"{where}: bad {tag}: {str(exc)[:80]}") from None
    raise Refused("INVALID", f"{where}: an object or array must be wrapped in $json")


def params(raw: Any) -> list[Any]:
    """The ``params`` array of a request, converted (``raw`` itself when every value is sent
    as it is)."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise Refused("INVALID", "params must be an array")
    # null, booleans, floats, text and 64-bit integers are themselves (most parameters: no
    # call for them, and most requests: no new list).
    lo, hi = _INT64
    for v in raw:
        if not (v is None or type(v) in _SELF or (type(v) is int and lo <= v <= hi)):
            return [v if v is None or type(v) in _SELF or (type(v) is int and lo <= v <= hi)
                    else param(v, f"params[{i}]") for i, v in enumerate(raw)]
    return raw


def _rfc3339(value: dt.datetime) -> str:
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def cell(value: Any) -> Any:
    """A row cell as JSON data (what :func:`param` reads back)."""
    kind = type(value)
    if value is None or kind in (bool, int, str):
        return value
    if kind is float:
        # NaN and infinities are not JSON: they travel as the strings PostgreSQL spells.
        return value if value == value and value not in (float("inf"), float("-inf")) \
            else str(value)
    if kind in (bytes, bytearray, memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if kind is decimal.Decimal:
        return {"$decimal": str(value)}
    if kind is dt.datetime:
        return {"$timestamp": _rfc3339(value)}
    if kind is dt.date:
        return {"$date": value.isoformat()}
    if kind is dt.time:
        return {"$time": value.isoformat()}
    if kind is dt.timedelta:          # MySQL's TIME, PostgreSQL's interval
        return {"$time": str(value)} if dt.timedelta(0) <= value < dt.timedelta(days=1) \
            else str(value)
    if kind is Json:
        return {"$json": value.value}
    if kind in (dict,):
        return {"$json": value}
    if kind in (list, tuple):
        return [cell(v) for v in value]
    if kind is uuid.UUID:
        return str(value)
    return str(value)
