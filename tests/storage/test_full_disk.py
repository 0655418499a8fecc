"""A full disk, for real: the data dir on a small tmpfs filled to the last byte.

Reads keep working, every kind of write fails as :class:`StorageFull` saying "disk full" (in
the exception, in the host's log, and as ``UNAVAILABLE`` to a plugin), nothing acknowledged
is lost, and writes work again as soon as there is space. Mounting needs root, which CI has
(and under CI a skip fails the run).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import random
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.app import OmniApp
from omnicore.console.errors import from_omni
from omnicore.storage import JobSpec, SQLiteStorage, StorageError, StorageFull
from tests.capabilities.test_kv import Guest, kv_wasm
from tests.waiting import eventually

UNAVAILABLE = -5


class Disk:
    """A 4 MiB tmpfs; :meth:`fill` takes every free byte, :meth:`free` gives them back."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.filler = root / "filler"

    def fill(self) -> None:
        with self.filler.open("ab", buffering=0) as f:
            for chunk in (65536, 4096, 512, 1):
                with contextlib.suppress(OSError):
                    while True:
                        f.write(b"\0" * chunk)
        probe = os.statvfs(self.root)
        assert probe.f_bavail == 0, "the disk is not full"

    def free(self) -> None:
        self.filler.unlink()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    root = tmp_path / "disk"
    root.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs", str(root)],
                   check=True)
    try:
        yield Disk(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def _writes(store: SQLiteStorage) -> dict[str, Callable[[], Any]]:
    """Every kind of write the storage takes, each big enough to need new pages."""
    big = os.urandom(200_000)
    wf = store.workflows
    return {
        "kv set": lambda: store.kv("p").set("new", big),
        "kv incr": lambda: store.kv("p").incr("counter-" + os.urandom(4).hex() + "x" * 400, 1),
        "kv delete": lambda: store.kv("p").delete("k0"),
        "plugin enqueue": lambda: store.jobs("p").enqueue("h", big, 0.0, max_attempts=1,
                                                          backoff_ms=1, max_queued=10),
        "operator enqueue": lambda: store.queue.add(JobSpec("p", "h", big, 0.0)),
        "event append": lambda: store.events.append("t", "p", big, 1000),
        "workflow run": lambda: wf.create_run("flow", "v", {"big": big.hex()}, None, "t"),
    }


def test_every_write_on_a_full_disk_says_disk_full_and_loses_nothing(
        disk: Disk, caplog: pytest.LogCaptureFixture) -> None:
    db = disk.root / "data" / "omnicore.db"
    store = SQLiteStorage(db)
    kv = store.kv("p")
    acknowledged = {f"k{i}": os.urandom(20_000) for i in range(20)}
    for key, value in acknowledged.items():
        kv.set(key, value)
    job = store.queue.add(JobSpec("p", "h", b"queued before", 0.0))
    writes = _writes(store)
    disk.fill()
    with caplog.at_level(logging.ERROR, logger="omnicore.storage"):
        for what, write in writes.items():
            with pytest.raises(StorageFull, match="disk full") as caught:
                write()
            assert str(db) in str(caught.value), what
    assert "disk full" in caplog.text and str(db) in caplog.text
    # Reads go on while the disk is full.
    assert kv.get("k3") == acknowledged["k3"]
    assert kv.list("") == sorted(acknowledged)
    assert kv.usage().keys == len(acknowledged)
    task = store.queue.get(job)
    assert task is not None and task.payload == b"queued before"
    # Space comes back: writes work at once, on the same open storage.
    disk.free()
    kv.set("after", b"space again")
    for write in writes.values():
        write()
    store.close()
    reopened = SQLiteStorage(db)
    try:
        for key, value in acknowledged.items():
            if key != "k0":                            # deleted once there was space
                assert reopened.kv("p").get(key) == value, key
        assert reopened.kv("p").get("k0") is None
        assert reopened.kv("p").get("after") == b"space again"
    finally:
        reopened.close()


def test_log_lines_about_a_full_disk_are_throttled_and_counted(
        disk: Disk, caplog: pytest.LogCaptureFixture) -> None:
    store = SQLiteStorage(disk.root / "data" / "omnicore.db")
    try:
        store.kv("p").set("seed", b"x")
        disk.fill()
        with caplog.at_level(logging.ERROR, logger="omnicore.storage"):
            for _ in range(50):
                with pytest.raises(StorageFull):
                    store.kv("p").set("big", os.urandom(100_000))
        lines = [r for r in caplog.records if "disk full" in r.getMessage()]
        assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]   # one per 10 s
    finally:
        store.close()


def test_a_full_disk_through_a_plugin_and_the_app(disk: Disk, tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    app = OmniApp("full", overrides={"data_dir": str(disk.root / "data"),
                                     "plugins_dir": str(tmp_path / "plugins"),
                                     "sandbox": {"watch": False,
                                                 "cache_dir": str(tmp_path / "cache")}},
                  environ={}, entry_points=False)
    app.start()
    try:
        app.plugins.load(kv_wasm("kvp"), grants={"kv": {}})
        guest = Guest(app, "kvp")
        assert guest.set("before", b"acknowledged") == 0
        disk.fill()
        with caplog.at_level(logging.ERROR, logger="omnicore.storage"):
            assert guest.set("during", os.urandom(300_000)) == UNAVAILABLE
        assert "disk full" in caplog.text        # the plugin's -5 has its reason in the log
        with pytest.raises(StorageFull, match="disk full"):
            app.kv.for_plugin("kvp").set("during", os.urandom(300_000))
        with pytest.raises(StorageFull, match="disk full"):
            app.jobs.enqueue("kvp", "get", os.urandom(300_000))
        assert guest.get("before") == (12, b"acknowledged")      # reads answer
        assert guest.get("during")[0] == -1
        disk.free()
        # No restart, no reopen.
        eventually(lambda: guest.set("during", b"now it fits") == 0, "a write with room again")
        assert guest.get("during") == (11, b"now it fits")
    finally:
        with contextlib.suppress(FileNotFoundError):
            disk.free()
        app.stop(grace=0)


def test_a_stop_on_a_full_disk_keeps_every_vector(disk: Disk, tmp_path: Path) -> None:
    """The vector indexes are written at stop; on a full disk that fails, and must neither
    break the stop nor lose a vector (the rows are the truth, the index files a cache)."""
    def app() -> OmniApp:
        return OmniApp("vec", overrides={"data_dir": str(disk.root / "data"),
                                         "plugins_dir": str(tmp_path / "plugins")},
                       environ={}, entry_points=False, builtin_extensions=[])

    first = app()
    first.start()
    vectors = first.vectors.for_plugin("p")
    vectors.create("docs", 8)
    rng = random.Random(7)
    rows = {f"v{i}": [rng.uniform(-1, 1) for _ in range(8)] for i in range(40)}
    for vid, vector in rows.items():
        vectors.upsert("docs", vid, vector)
    disk.fill()
    try:
        first.stop(grace=0)                   # the index flush fails: logged, not raised
    finally:
        disk.free()
    second = app()
    second.start()
    try:
        found = second.vectors.for_plugin("p").search("docs", rows["v17"], k=1)
        assert [hit.id for hit in found] == ["v17"]
    finally:
        second.stop(grace=0)


def test_the_console_answers_a_full_disk_with_507_and_the_reason() -> None:
    full = StorageFull("storage /x/omnicore.db: write failed: disk full (database or disk is "
                       "full): nothing was written; free space on its disk and writes work again")
    error = from_omni(full)
    assert (error.status, error.type) == (507, "StorageFull")
    assert "disk full" in error.message
    assert from_omni(StorageError("storage /x: read failed: disk I/O error")).status == 503


def test_the_database_size_cap_is_a_full_disk_too(tmp_path: Path) -> None:
    """SQLite's own "full" (``max_page_count``), the other way to run out of room."""
    store = SQLiteStorage(tmp_path / "omnicore.db")
    try:
        store.kv("p").set("k", b"v")
        pages = store.backend.read("PRAGMA page_count")[0][0]
        store.backend.read(f"PRAGMA max_page_count={pages + 2}")
        with pytest.raises(StorageFull, match="disk full"):
            store.kv("p").set("big", os.urandom(1_000_000))
        assert store.kv("p").get("k") == b"v"
        store.backend.read("PRAGMA max_page_count=1073741823")
        store.kv("p").set("big", b"fits now")
    finally:
        store.close()


def test_enospc_is_a_full_disk() -> None:
    from omnicore.storage.sqlite.database import _is_full

    assert _is_full(OSError(errno.ENOSPC, "No space left on device"))
    assert not _is_full(OSError(errno.EACCES, "Permission denied"))
