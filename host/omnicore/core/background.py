"""A daemon thread a host service runs until it stops (a sweep, a schedule, a listener).

Every such service needs the same few rules, and each written by hand got one of them wrong
somewhere: start the thread once however many callers ask at the same moment; with ``once``,
never start it again after the service closed (a callback registered during shutdown must not
revive it); and stop it without joining the thread that is stopping (a service closed from its
own thread's callback would wait for itself).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

__all__ = ["Background"]


class Background:
    """One daemon thread named ``name``: :meth:`start` runs a target on it, :meth:`stop` sets
    :attr:`stopping` (what the target waits on between its rounds) and waits for it.

    ``once``: a stopped thread is never started again (a service that closes for good).
    Otherwise :meth:`start` after :meth:`stop` starts a new one (a service restarted with its
    app)."""

    def __init__(self, name: str, *, once: bool = False) -> None:
        self.name = name
        self.once = once
        #: Set by :meth:`stop`: the target returns at its next ``stopping.wait(...)``.
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self, target: Callable[[], None]) -> bool:
        """Run ``target`` on a new thread; False (nothing done) when one runs already, or,
        ``once``, after :meth:`stop`. Safe from any number of threads at once."""
        with self._lock:
            if self._thread is not None or (self.once and self.stopping.is_set()):
                return False
            self.stopping.clear()
            self._thread = threading.Thread(target=target, name=self.name, daemon=True)
            self._thread.start()
            return True

    @property
    def running(self) -> bool:
        """A thread was started and not yet stopped."""
        return self._thread is not None

    def stop(self, timeout: float) -> None:
        """Set :attr:`stopping` and wait up to ``timeout`` seconds for the thread to end
        (not when called from that thread itself: it ends once it returns)."""
        with self._lock:
            self.stopping.set()
            thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
