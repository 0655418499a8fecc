"""The connectors' pool (specs/abi.md §4.10, Sessions and Shares), on its own: which
connection a plugin gets, when a connection passes through the reset, and each plugin's
share. The connections are plain objects counting what was done to them (the pool's logic is
what is tested; the servers' side of a reset is tests/capabilities/test_sql_isolation.py)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from omnicore.egress.db.base import Pool
from omnicore.egress.refused import Refused


class Conn:
    made = 0

    def __init__(self) -> None:
        Conn.made += 1
        self.id = Conn.made
        self.broken = False
        self.closed = False
        self.owner: str | None = None
        self.resets = 0

    def close(self) -> None:
        self.closed = True


def pool(size: int, fail_reset: bool = False) -> Pool:
    def reset(conn: Any, deadline: float) -> None:
        conn.resets += 1
        if fail_reset:
            raise OSError("the server did not confirm")

    return Pool("db", size, lambda deadline: Conn(), reset=reset)


def later() -> float:
    return time.monotonic() + 5


def test_a_plugin_gets_its_own_idle_connection_back_as_it_was() -> None:
    p = pool(4)
    a, reused = p.acquire(later(), "a")
    assert not reused
    p.release(a)
    again, reused = p.acquire(later(), "a")
    assert again is a and reused and a.resets == 0 and p.resets == 0


def test_with_room_another_plugin_gets_a_new_connection_not_a_reset() -> None:
    p = pool(2)
    a, _ = p.acquire(later(), "a")
    p.release(a)
    for _ in range(5):  # two plugins taking turns: one connection each, no reset
        b, _ = p.acquire(later(), "b")
        p.release(b)
        a2, reused = p.acquire(later(), "a")
        assert a2 is a and reused
        p.release(a2)
    assert b is not a and p.resets == 0 and p.idle == 2


def test_a_full_pool_hands_the_least_recently_used_over_through_the_reset() -> None:
    p = pool(1)
    a, _ = p.acquire(later(), "a")
    p.release(a)
    b, reused = p.acquire(later(), "b")
    assert b is a and not reused and a.resets == 1 and a.owner == "b" and p.resets == 1
    p.release(b)


def test_a_failed_reset_closes_the_connection_and_the_plugin_gets_a_new_one() -> None:
    p = pool(1, fail_reset=True)
    a, _ = p.acquire(later(), "a")
    p.release(a)
    b, reused = p.acquire(later(), "b")
    assert a.closed and b is not a and not reused and b.owner == "b"
    assert p.in_use == 1 and p.idle == 0


def test_every_connection_in_use_counts_against_a_plugins_share() -> None:
    p = pool(4)  # a share of 2
    held = [p.acquire(later(), "a")[0] for _ in range(2)]
    with pytest.raises(Refused) as info:
        p.acquire(time.monotonic() + 0.05, "a")
    assert info.value.status == "QUOTA" and "(2 of 4 connections)" in str(info.value)
    other = [p.acquire(later(), "b")[0]]  # the neighbour is not starved
    # Nor is a third plugin: b's second connection would take the one a newcomer is owed
    # (specs/abi.md §4.10, Pool and fairness).
    with pytest.raises(Refused) as info:
        p.acquire(time.monotonic() + 0.05, "b")
    assert info.value.status == "QUOTA" and "owed to the other plugins" in str(info.value)
    other.append(p.acquire(later(), "c")[0])
    assert p.in_use == 4
    with pytest.raises(Refused) as info:
        p.acquire(time.monotonic() + 0.05, "d")
    assert info.value.status == "UNAVAILABLE"
    for c in held + other:
        p.release(c)


def test_a_plugin_waiting_for_its_share_gets_the_connection_it_frees() -> None:
    p = pool(2)  # a share of 1
    first, _ = p.acquire(later(), "a")
    waiting = threading.Event()
    got: list[Any] = []

    def second() -> None:
        waiting.set()
        got.append(p.acquire(later(), "a")[0])

    t = threading.Thread(target=second)
    t.start()
    waiting.wait()
    b, _ = p.acquire(later(), "b")  # the neighbour's meanwhile
    p.release(b)
    p.release(first)  # every waiter looks again: "a"'s is freed
    t.join(10)
    assert got == [first]
    p.release(first)
