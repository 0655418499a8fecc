"""JSON from outside the host (a guest, a request body, a webhook delivery), parsed strictly.

Python's ``json.loads`` accepts ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON:
stored and handed back, they would make the host emit invalid JSON to the next reader (a
console page, another SDK's parser). Every capability parses guest JSON through :func:`loads`.

``json.loads`` also recurses once per level of nesting, so 200,000 nested brackets end in a
``RecursionError`` (and a structure just under the interpreter's limit in one later, when it
is validated, rendered or dumped). Readers of untrusted text pass ``max_depth``: the nesting
is measured in one linear scan before anything is parsed.
"""

from __future__ import annotations

import re
from itertools import accumulate
from typing import Any

from omnicore.core import jsoncodec

__all__ = ["MAX_DEPTH", "loads", "nesting", "request"]

#: How deeply a console request body or a webhook delivery may nest.
MAX_DEPTH = 64

# A JSON string, escapes included. Possessive, and the closing quote optional, so an
# unterminated string runs to the end in one pass instead of being retried from every quote.
_STRING = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _utf8(raw: bytes | str) -> bytes:
    return raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw


def nesting(raw: bytes | str) -> int:
    """How deeply brackets nest in JSON ``raw`` (strings skipped): linear, in C, and never
    recursive (the running sum of +1 per opening and -1 per closing bracket, at its peak)."""
    steps = _STRING.sub(b"", _utf8(raw)).translate(_STEPS, _NOT_BRACKETS)
    return max(accumulate(memoryview(steps).cast("b")), default=0)


def loads(raw: bytes | str, *, max_depth: int | None = None) -> Any:
    """``json.loads`` without NaN/Infinity, and (with ``max_depth``) refused when nested deeper
    than that; ValueError (or UnicodeDecodeError) if invalid."""
    if max_depth is not None:
        data = raw if type(raw) is bytes else _utf8(raw)
        # Counting brackets costs almost nothing and settles nearly every real body.
        if data.count(b"[") + data.count(b"{") > max_depth and nesting(data) > max_depth:
            raise ValueError(f"the JSON is nested more than {max_depth} levels deep")
    return jsoncodec.loads(raw, parse_constant=_refuse)


def request(raw: bytes | str, *, max_depth: int | None = None) -> Any:
    """A capability's request JSON from a guest (:func:`loads`); Refused INVALID if it is not
    JSON."""
    try:
        return loads(raw, max_depth=max_depth)
    except (ValueError, UnicodeDecodeError) as exc:
        # Imported here: the console and MCP parse through this module without egress.
        from omnicore.egress.refused import Refused

        raise Refused("INVALID", f"request is not JSON: {str(exc)[:100]}") from None
