"""``Once``: made on first use, one value for every thread, forgotten by ``take``."""

from __future__ import annotations

import threading

from omnicore.core.once import Once


def test_made_on_first_get_and_kept() -> None:
    made: list[object] = []

    def make() -> object:
        made.append(object())
        return made[-1]

    once = Once(make)
    assert once.made is None and made == []          # asking whether it was made makes nothing
    first = once.get()
    assert once.get() is first and once.made is first and made == [first]


def test_threads_asking_at_once_share_one_value() -> None:
    inside = threading.Event()
    release = threading.Event()
    calls: list[int] = []

    def make() -> list[int]:
        calls.append(1)
        inside.set()
        release.wait(10)
        return calls

    once = Once(make)
    got: list[object] = []
    threads = [threading.Thread(target=lambda: got.append(once.get())) for _ in range(4)]
    threads[0].start()
    assert inside.wait(10)                            # the first is making it; the rest wait
    for t in threads[1:]:
        t.start()
    release.set()
    for t in threads:
        t.join(10)
    assert calls == [1] and len(got) == 4 and all(g is calls for g in got)


def test_take_forgets_and_hands_back_what_was_made() -> None:
    n = iter(range(10))
    once = Once(lambda: next(n))
    assert once.take() is None                        # nothing made: nothing to close
    assert once.get() == 0
    assert once.take() == 0 and once.made is None
    assert once.get() == 1                            # the next use makes a new one
