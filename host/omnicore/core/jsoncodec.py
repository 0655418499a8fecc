"""The host's own JSON, through orjson where that gives the same answer as :mod:`json`.

orjson parses and writes small documents 5-20 times faster than :mod:`json` (bench/
bench_host.py prints both on our payloads), but it does not say everything the same way, so
each function takes it only where the answer cannot differ and hands the rest to ``json``:

* :func:`loads` answers exactly what ``json.loads`` answers, value or error. orjson is tried
  first; anything it refuses (``NaN``, ``1e400``, a lone surrogate, a byte-order mark, text
  that is not JSON) goes to ``json``, which accepts or refuses it in its own words. The one
  input orjson accepts with another value, an integer beyond 64 bits (it gives a float), never
  reaches it: a run of 19 digits anywhere sends the text to ``json``.
* :func:`dumps` writes compact JSON as UTF-8. A ``dict`` key that is not a string, an integer
  beyond 64 bits, a datetime, a dataclass or a subclass of a built-in type goes to
  ``json.dumps`` (orjson refuses them or writes them its own way). Two differences remain,
  both tested (tests/core/test_jsoncodec.py): text is written as UTF-8 instead of ``\\u``
  escapes (the same JSON string), and NaN and ±Infinity become ``null`` instead of the tokens
  ``NaN``/``Infinity``, which are not JSON and which every SDK's parser refuses.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

__all__ = ["dumps", "loads", "loads_object"]

# Every digit made "0", then a search for 19 of them: 15 times faster than the regular
# expression [0-9]{19}, which cost more than the parse it guards on a page of plugins.
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_NUMBER = b"0" * 19
_DUMP = (orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
         | orjson.OPT_PASSTHROUGH_SUBCLASS)


def loads(raw: bytes | str, **fallback: Any) -> Any:
    """``json.loads(raw, **fallback)``: the same value or the same error, faster.

    ``fallback`` (e.g. ``parse_constant``) only matters for what orjson refuses, which is all
    it could change.
    """
    try:
        data = raw if isinstance(raw, bytes) else raw.encode("utf-8")
        if _LONG_NUMBER not in data.translate(_DIGITS_AS_ZERO):
            return orjson.loads(data)
    except (orjson.JSONDecodeError, UnicodeEncodeError):
        pass
    return json.loads(raw, **fallback)


def loads_object(raw: bytes | str, what: str) -> dict[str, Any]:
    """``raw`` as a JSON object, or a ValueError saying ``what`` (``"its config blob"``) is
    not JSON, or not an object: the one check of a document read from outside."""
    try:
        doc = loads(raw)
    except ValueError:
        raise ValueError(f"{what} is not JSON") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{what} is not a JSON object")
    return doc


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def dumps(obj: Any, fallback: Callable[[Any], bytes] = _compact) -> bytes:
    """Compact JSON of ``obj`` as UTF-8 bytes; what orjson would write its own way is written
    by ``fallback`` (default: ``json.dumps(obj, separators=(",", ":")).encode()``, what the
    host wrote before; the module docstring says what still differs)."""
    try:
        return orjson.dumps(obj, option=_DUMP)
    except TypeError:  # orjson.JSONEncodeError is one
        return fallback(obj)
