"""Publish events (``omnicore:events``; needs the ``events`` grant). A plugin's events are
published as ``plugin.<its name>.<topic>``; handlers receive the events its manifest
subscribes to (``subscriptions`` in omnicore.toml).

Refusals raise :class:`~omnicore_plugin.HostError`: ``DENIED`` (the grant's ``publish``
patterns do not cover the topic), ``INVALID``, ``TOO_LARGE``, ``QUOTA``, ``UNAVAILABLE``.
"""

from __future__ import annotations

import json
from typing import Any

from omnicore_plugin._binding import Binding

__all__ = ["publish", "publish_json"]

_host = Binding("events")


def publish(topic: str, payload: bytes | str = b"") -> None:
    """Publish ``payload`` on ``plugin.<name>.<topic>``."""
    data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    _host.call("publish", topic, data)


def publish_json(topic: str, value: Any) -> None:
    """Publish ``value`` as JSON."""
    publish(topic, json.dumps(value, separators=(",", ":"), ensure_ascii=False))
