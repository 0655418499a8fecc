"""Durable background calls of the plugin's own handlers (``omnicore:tasks``; needs the
``tasks`` grant). Delivery is at least once, with retries: make the handler idempotent.

Refusals raise :class:`~omnicore_plugin.HostError`: ``NOT_FOUND`` (no such handler, or no
such task to cancel), ``INVALID`` (a delay over the grant's ``max_delay_ms``),
``TOO_LARGE``, ``QUOTA``, ``UNAVAILABLE``.
"""

from __future__ import annotations

from omnicore_plugin._binding import Binding

__all__ = ["cancel", "enqueue"]

_host = Binding("tasks")


def enqueue(handler: str, payload: bytes | str = b"", delay_ms: int = 0) -> int:
    """Have the host call ``handler(payload)`` after ``delay_ms``; the task id."""
    data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    return int(_host.call("enqueue", handler, data, delay_ms))


def cancel(task_id: int) -> bool:
    """Cancel a task: True if cancelled, False if it already ran or is running."""
    return bool(_host.call("cancel", task_id))
