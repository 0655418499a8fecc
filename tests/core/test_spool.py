"""omnicore.core.spool: the journal a host keeps through an outage. Records come back whole
and in order, a torn or corrupt tail is ignored, a live host's file is never adopted, a dead
host's is adopted once (by one of two hosts starting together), and a compaction never leaves
the file unlocked."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

from omnicore.core.spool import Spool


def _held_by_child(folder: Path, ready: multiprocessing.synchronize.Event) -> None:
    spool = Spool(folder, "events", "child")
    spool.open()
    spool.append({"n": "child"})
    ready.set()
    signal.pause()  # alive, holding its lock, until the test kills it


def test_records_survive_a_reopen_in_order(tmp_path: Path) -> None:
    first = Spool(tmp_path, "events", "a")
    assert first.open() == []
    for n in range(3):
        first.append({"n": n, "data": "x" * n})
    os.close(first._fd)  # type: ignore[arg-type]  # the process dies: no close()
    first._fd = None
    again = Spool(tmp_path, "events", "b")
    assert [r["n"] for r in again.open()] == [0, 1, 2]  # adopted from the dead "a"
    assert not (tmp_path / "events-a.spool").exists()
    again.close()


def test_a_torn_or_corrupt_tail_is_ignored(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "events", "a")
    spool.open()
    spool.append({"n": 1})
    spool.append({"n": 2})
    spool.close()
    path = tmp_path / "events-a.spool"
    whole = path.read_bytes()
    path.write_bytes(whole[:-3])  # the host died while writing its last record
    assert [r["n"] for r in Spool(tmp_path, "events", "b").open()] == [1]
    path2 = tmp_path / "events-c.spool"
    flipped = bytearray(whole)
    flipped[-2] ^= 0xFF  # a bit flipped in the last record: its CRC fails
    path2.write_bytes(bytes(flipped))
    assert [r["n"] for r in Spool(tmp_path, "events", "d").open()] == [1]


def test_a_live_hosts_spool_is_never_adopted(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    ready = ctx.Event()
    child = ctx.Process(target=_held_by_child, args=(tmp_path, ready))
    child.start()
    try:
        assert ready.wait(60)
        mine = Spool(tmp_path, "events", "me")
        assert mine.open() == []  # the child holds its lock: alive
        assert (tmp_path / "events-child.spool").exists()
        mine.close()
        os.kill(child.pid, signal.SIGKILL)  # the kernel drops its lock
        child.join(30)
        later = Spool(tmp_path, "events", "later")
        assert later.open() == [{"n": "child"}]
        assert not (tmp_path / "events-child.spool").exists()
        later.close()
    finally:
        if child.is_alive():
            child.kill()
        child.join(30)


def test_a_rewrite_keeps_only_what_is_pending_and_stays_locked(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "events", "a")
    spool.open()
    for n in range(5):
        spool.append({"n": n})
    spool.rewrite([{"n": 3}, {"n": 4}])
    spool.append({"n": 5})
    other = Spool(tmp_path, "events", "b")
    assert other.open() == []  # "a" still holds its (new) file
    other.close()
    os.close(spool._fd)  # type: ignore[arg-type]
    spool._fd = None
    assert [r["n"] for r in Spool(tmp_path, "events", "c").open()] == [3, 4, 5]


def test_an_emptied_spool_is_removed_at_close(tmp_path: Path) -> None:
    spool = Spool(tmp_path, "events", "a")
    spool.open()
    spool.append({"n": 1})
    spool.clear()
    spool.close()
    assert list(tmp_path.iterdir()) == []
