"""The secrets the operator exposed to this plugin (``omnicore:secrets``; needs the
``secrets`` grant, whose ``expose`` lists the names). Prefer connectors (:mod:`.http`),
which use a secret without the plugin seeing it.

Refusals raise :class:`~omnicore_plugin.HostError` with ``code`` ``DENIED`` (the grant does
not expose the name), ``INVALID`` (an empty or over-long name) or ``UNAVAILABLE``.
"""

from __future__ import annotations

from omnicore_plugin._binding import Binding
from omnicore_plugin._errors import HostError

__all__ = ["get", "get_text"]

_host = Binding("secrets")


def get(name: str) -> bytes | None:
    """The secret ``name``, or None when it is exposed but not set."""
    try:
        return bytes(_host.call("get", name))
    except HostError as exc:
        if exc.code == "NOT_FOUND":
            return None
        raise


def get_text(name: str, default: str | None = None) -> str | None:
    """The secret ``name`` as UTF-8 text, or ``default`` when it is not set."""
    value = get(name)
    return default if value is None else value.decode("utf-8")
