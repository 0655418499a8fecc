"""Metadata of memories and vectors: a JSON object kept as text, and the equality filters
that select rows by it.

Both stores take the same metadata and the same filters (specs/abi.md §4.4, §4.5); each
refuses with its own error (``BadMemory``, ``BadVector``), so the rules are written once here
and the caller names the class.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from omnicore.storage.errors import Refused

__all__ = ["Filter", "check_filter", "metadata_json"]

#: A checked filter: (key, value) pairs that a row's metadata must all equal.
Filter = Sequence[tuple[str, str | int | float]]


def metadata_json(metadata: Mapping[str, Any] | None, refused: type[Refused]) -> str | None:
    """``metadata`` as compact JSON text (None for none); ``refused`` unless an object."""
    if metadata is None:
        return None
    if not isinstance(metadata, Mapping):
        raise refused("metadata must be a JSON object")
    return json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))


def check_filter(flt: Mapping[str, Any] | None, refused: type[Refused]) -> Filter:
    """``flt`` as checked pairs (booleans as 0/1); ``refused`` for a bad key or value."""
    if not flt:
        return []
    if not isinstance(flt, Mapping) or len(flt) > 16:
        raise refused("filter must be a JSON object of at most 16 keys")
    out: list[tuple[str, str | int | float]] = []
    for key, value in flt.items():
        if not isinstance(key, str) or not key or len(key) > 128 or '"' in key:
            raise refused(f"bad filter key {str(key)[:140]!r}")
        if isinstance(value, bool):
            value = 1 if value else 0
        elif not isinstance(value, str | int | float) or (
                isinstance(value, float) and not math.isfinite(value)):
            raise refused(f"filter value of {key!r} must be a string, number or boolean")
        out.append((key, value))
    return out
