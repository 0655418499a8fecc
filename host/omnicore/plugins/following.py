"""The thread that follows a table of the app's store for the plugin host: the operator's
settings (:mod:`omnicore.plugins.operator`) and the plugin catalog
(:mod:`omnicore.plugins.convergence`).

It sleeps until the storage tells of a change (``LISTEN/NOTIFY``, SQLite's wake-up) or
``poll_s`` passed, then runs ``catch_up``; while the database does not answer it says so once,
and once again when it answers. A step that fails for another reason is logged with its
traceback and tried again at the next wake-up: the thread never dies of it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from omnicore.storage.errors import StorageError

__all__ = ["Following"]


class Following:
    """One follower's thread: ``what`` names the table in its log lines (``"plugin
    catalog"``); :attr:`failing` is true while the database does not answer."""

    def __init__(self, what: str, log: logging.Logger, *, poll_s: float,
                 thread_name: str) -> None:
        self._what = what
        self._log = log
        self._poll_s = poll_s
        self._thread_name = thread_name
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.failing = False

    def wake(self) -> None:
        """Run ``catch_up`` now rather than at the next poll."""
        self._wake.set()

    def start(self, catch_up: Callable[[], object],
              subscribe: Callable[[Callable[[], None]], None]) -> None:
        """Follow in a thread: ``subscribe(wake)`` asks the storage to call ``wake`` on each
        change it hears of."""
        subscribe(self._wake.set)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, args=(catch_up,),
                                        name=self._thread_name, daemon=True)
        self._thread.start()

    def _run(self, catch_up: Callable[[], object]) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._poll_s)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                catch_up()
                if self.failing:
                    self._log.info("%s: the database answers again; following changes",
                                   self._what)
                self.failing = False
            except StorageError as exc:
                if not self.failing:
                    self._log.warning("%s: cannot read changes (%s); retrying", self._what,
                                      exc)
                self.failing = True
            except Exception:
                self._log.exception("%s: following it failed; trying again", self._what)

    def stop(self, timeout: float) -> None:
        """Stop the thread, waiting up to ``timeout`` seconds for it."""
        self._stop.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)
