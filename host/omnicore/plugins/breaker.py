"""A per-plugin circuit breaker.

``closed`` lets every call through. ``failure_threshold`` consecutive *sandbox* failures
(traps and limit hits, see :func:`counts_as_failure`) open it: calls then fail fast with
:class:`~omnicore.errors.CircuitOpen` without entering the guest. After ``cooldown_s`` the
breaker is ``half-open``: exactly one probe call goes through while the others keep failing
fast; a good probe closes the breaker, a bad one opens it for another cool-down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Literal

from omnicore.errors import (
    CircuitOpen,
    DeadlineExceeded,
    FuelExhausted,
    MemoryLimitExceeded,
    OutputTooLarge,
    Trap,
)

__all__ = ["BreakerState", "CircuitBreaker", "counts_as_failure"]

BreakerState = Literal["closed", "open", "half-open"]

# Only failures that say the plugin itself is unwell count. A GuestError is the plugin
# answering normally ("bad input"), and InputTooLarge is the caller's fault: letting those
# open the breaker would let one noisy client take a healthy plugin offline for everyone.
_FAILURES: tuple[type[BaseException], ...] = (
    Trap, DeadlineExceeded, FuelExhausted, MemoryLimitExceeded, OutputTooLarge,
)


def counts_as_failure(exc: BaseException) -> bool:
    """Whether ``exc`` from a call counts towards opening the breaker."""
    return isinstance(exc, _FAILURES)


@dataclass(eq=False)
class CircuitBreaker:
    """Thread-safe breaker for one plugin.

    ``on_change(old, new)`` is called after every state change, outside the lock, so it may
    publish events or log without risking a deadlock with concurrent calls.
    """

    plugin: str
    _: KW_ONLY
    failure_threshold: int = 5
    cooldown_s: float = 30.0
    on_change: Callable[[BreakerState, BreakerState], None] | None = None
    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _state: BreakerState = field(default="closed", init=False, repr=False)
    _failures: int = field(default=0, init=False, repr=False)
    _opened_at: float = field(default=0.0, init=False, repr=False)
    _probing: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {self.failure_threshold}")
        if self.cooldown_s < 0:
            raise ValueError(f"cooldown_s must be >= 0, got {self.cooldown_s}")

    @property
    def state(self) -> BreakerState:
        """The current state; an open breaker whose cool-down passed reads ``half-open``."""
        if self._state == "closed":
            # One read, no lock (a traced call's span reads it on every call): a racing
            # transition reads as either side of it, as before_call's hot path does.
            return "closed"
        with self._lock:
            if self._state == "open" and self.clock() - self._opened_at >= self.cooldown_s:
                return "half-open"
            return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success."""
        return self._failures

    def before_call(self, handler: str | None = None) -> None:
        """Admit a call or raise :class:`CircuitOpen`."""
        if self._state == "closed":
            return  # the hot path; a racing transition at worst lets one more call through
        change: tuple[BreakerState, BreakerState] | None = None
        with self._lock:
            state: BreakerState = self._state  # re-read: it may have closed meanwhile
            if state == "closed":
                return
            if state == "open":
                remaining = self.cooldown_s - (self.clock() - self._opened_at)
                if remaining > 0:
                    raise CircuitOpen(
                        f"plugin '{self.plugin}' circuit is open after {self._failures} "
                        f"consecutive failures; calls fail fast for another {remaining:.1f}s "
                        "(see the plugin's last error and log)",
                        plugin=self.plugin, handler=handler)
                self._state = "half-open"
                change = ("open", "half-open")
            if self._probing:
                raise CircuitOpen(
                    f"plugin '{self.plugin}' circuit is half-open and a probe call is in "
                    "flight; retry shortly", plugin=self.plugin, handler=handler)
            self._probing = True
        self._notify(change)

    def record_success(self) -> None:
        """Report a call that finished without a sandbox failure."""
        if self._failures == 0 and self._state == "closed":
            return  # the hot path: nothing to change, so no lock
        change: tuple[BreakerState, BreakerState] | None = None
        with self._lock:
            self._failures = 0
            self._probing = False
            if self._state != "closed":
                change = (self._state, "closed")
                self._state = "closed"
        self._notify(change)

    def record_failure(self) -> None:
        """Report a call that failed in a way :func:`counts_as_failure` accepts."""
        change: tuple[BreakerState, BreakerState] | None = None
        with self._lock:
            self._failures += 1
            was_probe = self._probing
            self._probing = False
            if self._state == "half-open" or (
                    self._state == "closed" and self._failures >= self.failure_threshold):
                change = (self._state, "open")
                self._state = "open"
                self._opened_at = self.clock()
            elif self._state == "open" and was_probe:
                self._opened_at = self.clock()
        self._notify(change)

    def record(self, exc: BaseException | None) -> None:
        """Report a call's outcome: ``None`` for success, else the exception it raised."""
        if exc is not None and counts_as_failure(exc):
            self.record_failure()
        else:
            self.record_success()

    def abandon(self) -> None:
        """Report a call that ended without a verdict on the plugin's health.

        Frees the half-open probe slot (if this call held it) without changing the state.
        """
        with self._lock:
            self._probing = False

    def reset(self) -> None:
        """Close the breaker (a new version of the plugin was loaded)."""
        self.record_success()

    def _notify(self, change: tuple[BreakerState, BreakerState] | None) -> None:
        if change is not None and self.on_change is not None:
            self.on_change(*change)
