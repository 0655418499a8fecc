"""The plugin's own config section (``omnicore:config``; needs the ``config`` grant)."""

from __future__ import annotations

import json
from typing import Any

from omnicore_plugin._binding import Binding

__all__ = ["get", "get_json"]

_host = Binding("config")


def get(key: str = "", default: str | None = None) -> str | None:
    """The value at ``key`` (dotted path; "" is the whole section as JSON): a string value
    as is, any other value as compact JSON; ``default`` when absent."""
    value = _host.call("get", key)
    return default if value is None else str(value)


def get_json(key: str = "", default: Any = None) -> Any:
    """The value at ``key`` decoded as JSON (a string value stays a string)."""
    value = _host.call("get", key)
    if value is None:
        return default
    try:
        return json.loads(value)
    except ValueError:
        return value
