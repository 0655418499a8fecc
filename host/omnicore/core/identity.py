"""Runtime identity: a unique id per app instance, so logs and scale-out can tell hosts apart."""

from __future__ import annotations

import os
import socket
import uuid

__all__ = ["hostname", "new_runtime_id"]


def new_runtime_id() -> str:
    """A fresh id like ``rt-3f9c2a1b7d4e6f80``: 64 random bits, unique across hosts."""
    return f"rt-{uuid.uuid4().hex[:16]}"


def hostname() -> str:
    """This machine's host name (``HOSTNAME`` in containers, where it is the pod name)."""
    return os.environ.get("HOSTNAME") or socket.gethostname()
