"""The client side of a statement's deadline (egress/db/base.py): what is armed runs at its
time, what is disarmed never does, and disarmed entries do not pile up."""

from __future__ import annotations

import threading
import time

from omnicore.egress.db.base import Watchdog


def test_an_armed_entry_runs_and_a_disarmed_one_does_not() -> None:
    dog = Watchdog()
    ran: list[str] = []
    done = threading.Event()
    now = time.monotonic()
    Watchdog.disarm(dog.arm(now + 0.01, lambda: ran.append("disarmed")))
    dog.arm(now + 0.02, lambda: (ran.append("armed"), done.set()))
    assert done.wait(10)
    assert ran == ["armed"]  # the disarmed one was due first


def test_disarmed_entries_are_dropped_while_the_thread_sleeps() -> None:
    dog = Watchdog()
    far = time.monotonic() + 3600  # the thread sleeps until then: only arm() drops entries
    live = [dog.arm(far, lambda: None) for _ in range(5)]
    for _ in range(10_000):
        Watchdog.disarm(dog.arm(far, lambda: None))
    assert dog.queued <= 2 * 64 + 10  # not 10,005: at most twice the live ones, or 64
    assert all(entry[3] for entry in live)
    # An entry due before the sleeping thread's time still wakes it.
    done = threading.Event()
    dog.arm(time.monotonic() + 0.01, done.set)
    assert done.wait(10)
