"""core.outage.Outage: one log line when a loop's step starts failing and one when it works
again, however many threads tick meanwhile; a back-off that grows and stays bounded; writes
that must land tried again until they do, or the loop stops."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from omnicore.core.outage import Outage
from omnicore.errors import OmniError
from omnicore.logging import get_logger
from tests.waiting import eventually


class Down(OmniError):
    """What the loop depends on is away (a StorageError, in the host)."""


@pytest.fixture
def outage() -> Outage:
    return Outage("test queue", get_logger("omnicore.test.outage"), transient=(Down,),
                  first_s=0.01, max_s=0.2)


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str, bool]]:
    return [(r.levelno, r.getMessage(), r.exc_info is not None) for r in caplog.records
            if r.name == "omnicore.test.outage"]


def test_an_outage_is_one_line_down_and_one_line_up_across_threads(
        outage: Outage, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    healthy = threading.Event()
    resumed: list[str] = []
    outage.on_resume(lambda: resumed.append(threading.current_thread().name))

    def step() -> int:
        if not healthy.is_set():
            raise Down("storage db: unreachable")
        return 7

    results: list[int | None] = []

    def loop() -> None:
        for _ in range(50):
            results.append(outage.call(step, None))

    threads = [threading.Thread(target=loop) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [None] * 200 and outage.down
    assert outage.reason == "storage db: unreachable"
    healthy.set()
    threads = [threading.Thread(target=loop) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results[200:] == [7] * 200 and not outage.down and outage.reason is None
    assert len(resumed) == 1  # the renewals of a resume run once, not once per thread
    lines = _lines(caplog)
    assert [(level, exc) for level, _, exc in lines] == [(logging.ERROR, False),
                                                         (logging.INFO, False)]
    assert lines[0][1] == ("test queue paused: storage db: unreachable; retrying in the "
                           "background")
    assert lines[1][1].startswith("test queue resumed after ")


def test_a_bug_is_logged_once_with_its_traceback(outage: Outage,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    def step() -> None:
        raise KeyError("not an outage")

    for _ in range(10):
        assert outage.call(step, "default") == "default"
    (line,) = _lines(caplog)
    assert line[0] == logging.ERROR and line[2]  # the traceback of a bug is worth keeping


def test_the_back_off_grows_with_the_outage_and_stays_bounded(outage: Outage) -> None:
    assert outage.pause(0.5) == 0.5  # working: the loop's own pace
    outage.failed(Down("away"))
    assert outage.pause() == outage.first_s
    assert outage.pause(0.05) == 0.05  # never faster than the loop's own pace
    assert outage.pause(30.0) == outage.max_s  # never slower than max_s: a return is seen
    eventually(lambda: outage.pause() >= outage.max_s, "the back-off at its bound", every=0.01)
    assert outage.pause() == outage.max_s


def test_persist_writes_once_the_outage_ends(outage: Outage) -> None:
    tries = []

    def write() -> str:
        tries.append(time.monotonic())
        if len(tries) < 4:
            raise Down("away")
        return "written"

    assert outage.persist(write, threading.Event()) == "written"
    assert len(tries) == 4 and not outage.down


def test_persist_gives_up_at_the_stop_and_raises_a_bug_at_once(outage: Outage) -> None:
    stop = threading.Event()
    tries = []

    def away() -> None:
        tries.append(1)
        if len(tries) == 3:
            stop.set()
        raise Down("away")

    with pytest.raises(Down):
        outage.persist(away, stop)
    assert len(tries) == 3

    def bug() -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        outage.persist(bug, threading.Event())
