"""Failed-login throttling: slow down password guessing per account and per client address.

After ``free`` attempts inside ``window_s``, each further attempt must wait twice as long as
the one before (1 s, 2 s, 4 s ... capped at ``max_wait_s``). An attempt is counted when it
is let through, before its password is checked (:meth:`LoginThrottle.attempt`): thirty
guesses sent at once get ``free`` tries, not thirty. A success clears the account's count
and takes its own attempt back from the others (an office behind one address signs in all
day). Counts are in memory and bounded (``max_keys``), so a flood of made-up names cannot
grow the host's memory: the oldest keys are forgotten first.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

__all__ = ["LoginThrottle"]


class LoginThrottle:
    def __init__(self, *, free: int = 5, window_s: float = 900.0, max_wait_s: float = 300.0,
                 max_keys: int = 10_000) -> None:
        self.free = free
        self.window_s = window_s
        self.max_wait_s = max_wait_s
        self.max_keys = max_keys
        self._attempts: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _wait(self, key: str, now: float) -> float:
        count, last = self._attempts.get(key, (0, 0.0))
        if now - last > self.window_s:
            return 0.0
        if count < self.free:
            return 0.0
        wait = min(self.max_wait_s, 2.0 ** (count - self.free))
        return max(0.0, last + wait - now)

    def attempt(self, *keys: str) -> float:
        """Let one attempt on ``keys`` through and count it (0.0), or say how many seconds to
        wait (nothing counted). One lock holds the check and the count together."""
        now = time.monotonic()
        with self._lock:
            wait = max((self._wait(k, now) for k in keys), default=0.0)
            if wait > 0:
                return wait
            for key in keys:
                count, last = self._attempts.pop(key, (0, 0.0))
                if now - last > self.window_s:
                    count = 0
                self._attempts[key] = (count + 1, now)
            while len(self._attempts) > self.max_keys:
                self._attempts.popitem(last=False)
            return 0.0

    def succeeded(self, account: str, *others: str) -> None:
        """The attempt on ``account`` (and ``others``) was right: clear the account, and take
        the attempt back from the others."""
        with self._lock:
            self._attempts.pop(account, None)
            for key in others:
                count, last = self._attempts.get(key, (0, 0.0))
                if count <= 1:
                    self._attempts.pop(key, None)
                else:
                    self._attempts[key] = (count - 1, last)
