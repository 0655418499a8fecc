"""Failed-login throttling: slow down password guessing per account and per client address.

After ``free`` failures inside ``window_s``, each further attempt must wait twice as long as
the one before (1 s, 2 s, 4 s ... capped at ``max_wait_s``); a success clears the account's
count. Counts are in memory and bounded (``max_keys``), so a flood of made-up names cannot
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
        self._fails: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def _wait(self, key: str, now: float) -> float:
        count, last = self._fails.get(key, (0, 0.0))
        if now - last > self.window_s:
            return 0.0
        if count < self.free:
            return 0.0
        wait = min(self.max_wait_s, 2.0 ** (count - self.free))
        return max(0.0, last + wait - now)

    def retry_after(self, *keys: str) -> float:
        """Seconds to wait before trying any of ``keys`` again (0: go ahead)."""
        now = time.monotonic()
        with self._lock:
            return max((self._wait(k, now) for k in keys), default=0.0)

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                count, last = self._fails.pop(key, (0, 0.0))
                if now - last > self.window_s:
                    count = 0
                self._fails[key] = (count + 1, now)
            while len(self._fails) > self.max_keys:
                self._fails.popitem(last=False)

    def succeeded(self, key: str) -> None:
        with self._lock:
            self._fails.pop(key, None)
