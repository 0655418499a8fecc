from __future__ import annotations

import threading

import pytest

from omnicore.core.lifecycle import Lifecycle, State
from omnicore.errors import LifecycleError


def test_happy_path_and_listener() -> None:
    seen: list[tuple[State, State]] = []
    lc = Lifecycle("thing", lambda old, new: seen.append((old, new)))
    for s in (State.STARTING, State.RUNNING, State.STOPPING, State.STOPPED):
        lc.transition(s)
    assert lc.state is State.STOPPED
    assert seen == [(State.CREATED, State.STARTING), (State.STARTING, State.RUNNING),
                    (State.RUNNING, State.STOPPING), (State.STOPPING, State.STOPPED)]


@pytest.mark.parametrize(
    ("path", "bad", "words"),
    [
        ((), State.RUNNING, "it is created"),
        ((), State.STOPPING, "never started"),
        ((State.STARTING, State.RUNNING), State.STARTING, "already running"),
        ((State.STARTING, State.RUNNING, State.STOPPING, State.STOPPED), State.STARTING,
         "has been stopped"),
        ((State.STARTING, State.RUNNING, State.STOPPING, State.STOPPED), State.STOPPING,
         "already stopped"),
        ((State.STARTING, State.FAILED), State.RUNNING, "it is failed"),
    ],
)
def test_invalid_transitions_raise_and_keep_state(path: tuple[State, ...], bad: State,
                                                  words: str) -> None:
    lc = Lifecycle("app 'x'")
    for s in path:
        lc.transition(s)
    before = lc.state
    with pytest.raises(LifecycleError, match=words) as info:
        lc.transition(bad)
    assert "app 'x'" in str(info.value)
    assert lc.state is before


def test_concurrent_transitions_only_one_wins() -> None:
    lc = Lifecycle("race")
    wins: list[int] = []
    errors: list[int] = []
    barrier = threading.Barrier(8)

    def go(i: int) -> None:
        barrier.wait()
        try:
            lc.transition(State.STARTING)
            wins.append(i)
        except LifecycleError:
            errors.append(i)

    threads = [threading.Thread(target=go, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1 and len(errors) == 7
