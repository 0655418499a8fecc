"""A durable key-value store of the plugin's own (``omnicore:kv``; needs the ``kv`` grant).

Keys are strings of 1-512 UTF-8 bytes; values bytes (a str is stored as UTF-8). Refusals
raise :class:`~omnicore_plugin.HostError` with ``code`` ``INVALID`` (a bad key, a value
``incr`` cannot read as an integer), ``QUOTA``, ``TOO_LARGE`` or ``UNAVAILABLE``.
"""

from __future__ import annotations

import builtins

from omnicore_plugin._binding import Binding

__all__ = ["delete", "get", "get_text", "incr", "list", "set"]

_host = Binding("kv")


def get(key: str) -> bytes | None:
    """The value at ``key``, or None."""
    value = _host.call("get", key)
    return None if value is None else bytes(value)


def get_text(key: str, default: str | None = None) -> str | None:
    """The value at ``key`` as UTF-8 text, or ``default``."""
    value = get(key)
    return default if value is None else value.decode("utf-8")


def set(key: str, value: bytes | str) -> None:
    """Store ``value`` at ``key``."""
    _host.call("set", key, value.encode("utf-8") if isinstance(value, str) else bytes(value))


def delete(key: str) -> bool:
    """Remove ``key``; whether it existed."""
    return bool(_host.call("delete", key))


def incr(key: str, delta: int = 1) -> int:
    """Atomically add ``delta`` to the integer at ``key`` (absent: 0); the new value."""
    return int(_host.call("incr", key, delta))


def list(prefix: str = "") -> builtins.list[str]:
    """The keys starting with ``prefix``, sorted (at most 1,000)."""
    return builtins.list(_host.call("list", prefix))
