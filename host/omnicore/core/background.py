"""A daemon thread a host service runs until it stops (a sweep, a consolidation schedule)."""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Background"]


class Background:
    """One daemon thread named ``name``: :meth:`start` runs a target on it, :meth:`stop` sets
    :attr:`stopping` (what the target waits on between its rounds) and waits for it."""

    def __init__(self, name: str) -> None:
        self.name = name
        #: Set by :meth:`stop`: the target returns at its next ``stopping.wait(...)``.
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, target: Callable[[], None]) -> None:
        """Run ``target`` on a new thread; nothing when one runs already."""
        if self._thread is not None:
            return
        self.stopping.clear()
        self._thread = threading.Thread(target=target, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """Set :attr:`stopping` and wait up to ``timeout`` seconds for the thread to end."""
        self.stopping.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
