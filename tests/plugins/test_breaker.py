"""The circuit breaker on its own: thresholds, fast failure, half-open probe, events."""

from __future__ import annotations

import threading

import pytest

from omnicore.errors import (
    CircuitOpen,
    DeadlineExceeded,
    GuestError,
    InputTooLarge,
    MemoryLimitExceeded,
    Trap,
)
from omnicore.plugins.breaker import CircuitBreaker, counts_as_failure


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(threshold: int = 3, cooldown: float = 10.0):
    clock = Clock()
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker("p", failure_threshold=threshold, cooldown_s=cooldown,
                             on_change=lambda a, b: changes.append((a, b)), clock=clock)
    return breaker, clock, changes


def test_opens_after_threshold_consecutive_failures_and_fails_fast() -> None:
    breaker, _clock, changes = make(threshold=3)
    for _ in range(2):
        breaker.before_call()
        breaker.record(Trap("boom"))
    assert breaker.state == "closed"
    breaker.before_call()
    breaker.record(DeadlineExceeded("slow"))
    assert breaker.state == "open"
    assert changes == [("closed", "open")]
    with pytest.raises(CircuitOpen) as info:
        breaker.before_call("greet")
    assert info.value.plugin == "p" and info.value.handler == "greet"
    assert "3 consecutive failures" in str(info.value)


def test_success_resets_the_consecutive_count() -> None:
    breaker, _clock, changes = make(threshold=3)
    for _ in range(5):
        breaker.record(Trap("x"))
        breaker.record(Trap("x"))
        breaker.record(None)
    assert breaker.state == "closed" and breaker.consecutive_failures == 0
    assert changes == []


def test_half_open_after_cooldown_then_closed_on_success() -> None:
    breaker, clock, changes = make(threshold=1, cooldown=10.0)
    breaker.record(Trap("x"))
    clock.now += 9.9
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clock.now += 0.2
    assert breaker.state == "half-open"
    breaker.before_call()  # the probe is admitted
    with pytest.raises(CircuitOpen, match="probe"):
        breaker.before_call()  # everyone else still fails fast
    breaker.record(None)
    assert breaker.state == "closed"
    assert changes == [("closed", "open"), ("open", "half-open"), ("half-open", "closed")]
    breaker.before_call()


def test_failed_probe_reopens_for_a_full_cooldown() -> None:
    breaker, clock, changes = make(threshold=1, cooldown=10.0)
    breaker.record(Trap("x"))
    clock.now += 10
    breaker.before_call()
    breaker.record(MemoryLimitExceeded("big"))
    assert changes[-1] == ("half-open", "open")
    clock.now += 5
    with pytest.raises(CircuitOpen):
        breaker.before_call()
    clock.now += 5
    breaker.before_call()


def test_caller_faults_and_guest_errors_do_not_count() -> None:
    assert not counts_as_failure(GuestError("bad input"))
    assert not counts_as_failure(InputTooLarge("too big"))
    assert not counts_as_failure(ValueError("x"))
    breaker, _clock, _changes = make(threshold=1)
    for _ in range(10):
        breaker.record(GuestError("bad input"))
        breaker.record(InputTooLarge("too big"))
    assert breaker.state == "closed"


def test_concurrent_half_open_admits_exactly_one_probe() -> None:
    breaker, clock, _changes = make(threshold=1, cooldown=1.0)
    breaker.record(Trap("x"))
    clock.now += 2
    admitted: list[int] = []
    refused: list[int] = []
    barrier = threading.Barrier(8)

    def attempt(i: int) -> None:
        barrier.wait()
        try:
            breaker.before_call()
            admitted.append(i)
        except CircuitOpen:
            refused.append(i)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(admitted) == 1 and len(refused) == 7


def test_rejects_nonsense_settings() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker("p", failure_threshold=0)
    with pytest.raises(ValueError, match="cooldown_s"):
        CircuitBreaker("p", cooldown_s=-1)


def test_abandoned_probe_frees_the_slot() -> None:
    breaker, clock, _changes = make(threshold=1, cooldown=1.0)
    breaker.record(Trap("x"))
    clock.now += 2
    breaker.before_call()
    breaker.abandon()
    assert breaker.state == "half-open"
    breaker.before_call()  # a new probe is admitted


def test_a_closed_breakers_state_is_read_without_waiting_for_its_lock() -> None:
    """A traced call reads the state for its span on every call: while closed, that read is
    one attribute, never a wait behind a transition holding the lock (nor its cost)."""
    breaker, _clock, _changes = make()
    read: list[str] = []
    with breaker._lock:  # a transition in progress elsewhere
        reader = threading.Thread(target=lambda: read.append(breaker.state))
        reader.start()
        reader.join(30)
        assert not reader.is_alive() and read == ["closed"]
    for _ in range(3):
        breaker.record(Trap("x"))
    assert breaker.state == "open"  # the locked path still decides the others
