"""core/background.Background: the one home of a service's daemon thread (start once, never
again after a final stop, never join itself). Gates and barriers, no sleeps."""

from __future__ import annotations

import threading

from omnicore.core.background import Background


def test_many_callers_at_once_start_one_thread() -> None:
    bg = Background("omnicore-test-bg", once=True)
    callers = 16
    barrier = threading.Barrier(callers)
    started: list[bool] = []
    runs = []
    release = threading.Event()

    def target() -> None:
        runs.append(threading.current_thread().name)
        release.wait(30)

    def caller() -> None:
        barrier.wait(30)
        started.append(bg.start(target))

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    release.set()
    bg.stop(30)
    assert started.count(True) == 1 and len(started) == callers
    assert runs == ["omnicore-test-bg"]


def test_once_never_starts_again_after_its_stop() -> None:
    bg = Background("omnicore-test-once", once=True)
    assert bg.start(lambda: bg.stopping.wait(30))
    bg.stop(30)
    assert not bg.running
    # A callback registered while the service shuts down must not revive its thread.
    assert not bg.start(lambda: None)
    assert not bg.running


def test_a_restartable_one_starts_a_new_thread_with_stopping_cleared() -> None:
    bg = Background("omnicore-test-again")
    rounds = []

    def target() -> None:
        rounds.append(bg.stopping.is_set())
        bg.stopping.wait(30)

    assert bg.start(target)
    bg.stop(30)
    assert bg.start(target)
    bg.stop(30)
    assert rounds == [False, False]


def test_stopped_from_its_own_thread_it_does_not_wait_for_itself() -> None:
    bg = Background("omnicore-test-self", once=True)
    done = threading.Event()

    def target() -> None:
        bg.stop(30)  # a service closed from its own callback: join() would wait 30 s, or raise
        done.set()

    assert bg.start(target)
    assert done.wait(10)
    assert bg.stopping.is_set() and not bg.running
