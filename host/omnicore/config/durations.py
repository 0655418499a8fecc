"""Durations as people write them: ``30``, ``"500ms"``, ``"30s"``, ``"5m"``, ``"2h"``, ``"7d"``.

One grammar for every duration the product reads (workflow timeouts and waits, the retention
settings): a number is seconds; a suffix is ``ms``, ``s``, ``m``, ``h`` or ``d``.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["KEEP_FOR_EVER", "parse_duration", "parse_retention"]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
#: What a retention setting says to keep rows for ever (besides ``0``).
KEEP_FOR_EVER = ("never", "forever")


def parse_duration(value: Any) -> float:
    """Seconds from ``30``, ``"500ms"``, ``"30s"``, ``"5m"``, ``"2h"``, ``"1d"``."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        match = _DURATION.fullmatch(str(value).strip())
        if match is None:
            raise ValueError(f"{value!r} is not a duration like 500ms, 30s, 5m, 2h, 1d")
        seconds = float(match[1]) * _UNITS[match[2]]
    if seconds <= 0:
        raise ValueError(f"{value!r}: a duration must be positive")
    return seconds


def parse_retention(value: Any) -> float | None:
    """How long rows are kept, in seconds: a duration (:func:`parse_duration`), or None for
    ever (``0``, ``"0"``, ``"never"``, ``"forever"`` or null)."""
    if value is None or (not isinstance(value, bool) and isinstance(value, (int, float))
                         and value == 0):
        return None
    if isinstance(value, str) and value.strip().lower() in (*KEEP_FOR_EVER, "0", "0s", "0d"):
        return None
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a retention: a duration like 12h, 7d, 90d (a "
                         "number is seconds), or 0 / never to keep for ever") from None
