"""cluster.Membership through an outage of its storage: the heartbeat thread lives, ``/readyz``'s
reason is set while it lasts, one line says it began and one that it ended, and the heartbeat
beats again at once (a real SQLite instance table behind a switch)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicore.cluster import ClusterSettings, Membership
from omnicore.storage import SQLiteStorage, StorageError
from tests.waiting import eventually


class Switch:
    """The storage as Membership sees it; while ``down`` its instance table raises."""

    def __init__(self, storage: SQLiteStorage) -> None:
        self._storage = storage
        self.down = False
        self.refused = 0
        self.shared = True  # watched closely, as on PostgreSQL

    @property
    def instances(self) -> object:
        rows = self._storage.instances
        switch = self

        class Rows:
            def __getattr__(self, name: str) -> object:
                if switch.down:
                    switch.refused += 1
                    raise StorageError("storage test.db: unreachable")
                return getattr(rows, name)

        return Rows()


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[SQLiteStorage]:
    s = SQLiteStorage(tmp_path / "omnicore.db")
    yield s
    s.close()


def test_the_heartbeat_lives_through_an_outage_and_beats_at_once_after(
        storage: SQLiteStorage, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="omnicore.cluster")
    switch = Switch(storage)
    member = Membership(lambda: switch, "rt-a", "1.0",  # type: ignore[arg-type, return-value]
                        settings=ClusterSettings(heartbeat_s=0.2, check_s=0.05))
    member.start()
    try:
        assert member.unavailable is None
        switch.down = True
        eventually(lambda: switch.refused >= 5, "several ticks to fail")
        assert member.unavailable == "storage test.db: unreachable"  # /readyz says why
        assert member._thread is not None and member._thread.is_alive()
        switch.down = False
        back = time.time()
        eventually(lambda: member.unavailable is None, "the heartbeat to resume")
        (me,) = storage.instances.all()
        assert me.heartbeat_at >= back  # beaten at once, not a heartbeat period later
    finally:
        member.stop()
    lines = [(r.levelno, r.getMessage(), r.exc_info) for r in caplog.records
             if r.name == "omnicore.cluster"]
    assert lines[0] == (logging.ERROR, "cluster heartbeat paused: storage test.db: "
                        "unreachable; retrying in the background", None)
    assert lines[1][0] == logging.INFO and lines[1][1].startswith("cluster heartbeat resumed")
    assert len(lines) == 2, lines


def test_the_reap_line_names_the_jobs_handed_on_bounded(
        storage: SQLiteStorage, caplog: pytest.LogCaptureFixture) -> None:
    from omnicore.storage import JobSpec
    from omnicore.storage.instance_rows import Instance

    caplog.set_level(logging.INFO, logger="omnicore.cluster")
    now = time.time()
    jobs = [storage.queue.add(JobSpec("nobody", "h", b"x", now + 3600)) for _ in range(12)]
    storage.instances.register(Instance("rt-gone", "box-2", 77, "0.1.0", now - 60, now - 30))
    storage.backend.write_one(  # type: ignore[attr-defined]
        "UPDATE jobs SET state='running', owner='rt-gone', lease_until=?", (now + 3600,))
    switch = Switch(storage)
    member = Membership(lambda: switch, "rt-a", "1.0",  # type: ignore[arg-type, return-value]
                        settings=ClusterSettings(heartbeat_s=0.2, check_s=0.05))
    member.start()
    try:
        eventually(lambda: any("rt-gone" in r.getMessage() for r in caplog.records), "the reap")
    finally:
        member.stop()
    (line,) = [r.getMessage() for r in caplog.records if "stopped answering" in r.getMessage()]
    shown = ", ".join(str(j) for j in jobs[:10])
    assert line == (f"cluster: instance(s) rt-gone stopped answering; 12 jobs ({shown}, … 2 "
                    "more) handed on, now due again")
