"""JSON a guest sends to a host function, parsed strictly.

Python's ``json.loads`` accepts ``NaN``, ``Infinity`` and ``-Infinity``, which are not JSON:
stored and handed back, they would make the host emit invalid JSON to the next reader (a
console page, another SDK's parser). Every capability parses guest JSON through :func:`loads`.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads"]


def _refuse(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def loads(raw: bytes | str) -> Any:
    """``json.loads`` without NaN/Infinity; ValueError (or UnicodeDecodeError) if invalid."""
    return json.loads(raw, parse_constant=_refuse)
