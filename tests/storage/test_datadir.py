"""The data dir: private modes, the one-host lock, and the leases a dead holder left behind."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from omnicore.app import OmniApp
from omnicore.storage import DataDirLocked, SQLiteStorage
from omnicore.storage.datadir import LOCK_FILE, DataDirLock
from omnicore.storage.sqlite.users import SQLiteUsers


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- private files ---------------------------------------------------------------------------

def test_databases_and_their_wal_and_shm_are_0600_and_the_data_dir_0700(tmp_path: Path) -> None:
    data = tmp_path / "fresh" / "data"
    store = SQLiteStorage(data / "omnicore.db")
    store.kv("p").set("k", b"v")           # the WAL and its index now exist
    users = SQLiteUsers(data / "console.db")
    users.count()
    try:
        assert _mode(data) == 0o700
        for name in ("omnicore.db", "omnicore.db-wal", "omnicore.db-shm",
                     "console.db", "console.db-wal", "console.db-shm"):
            assert (data / name).exists(), name
            assert _mode(data / name) == 0o600, name
    finally:
        store.close()
        users.close()


def test_files_an_older_version_left_world_readable_are_tightened(tmp_path: Path) -> None:
    store = SQLiteStorage(tmp_path / "omnicore.db")
    store.kv("p").set("k", b"v")
    for name in ("omnicore.db", "omnicore.db-wal", "omnicore.db-shm"):
        (tmp_path / name).chmod(0o644)
    reopened = SQLiteStorage(tmp_path / "omnicore.db")   # a second connection: a CLI command
    try:
        for name in ("omnicore.db", "omnicore.db-wal", "omnicore.db-shm"):
            assert _mode(tmp_path / name) == 0o600, name
        assert reopened.kv("p").get("k") == b"v"
    finally:
        reopened.close()
        store.close()


def test_a_started_app_makes_its_data_dir_0700(make_app: Callable[..., OmniApp]) -> None:
    app = make_app()
    app.start()
    try:
        assert _mode(app.data_dir) == 0o700
        assert _mode(app.data_dir / "omnicore.db") == 0o600
    finally:
        app.stop(grace=0)


# -- the lock --------------------------------------------------------------------------------

def test_a_second_holder_is_refused_with_the_first_named(tmp_path: Path) -> None:
    first = DataDirLock(tmp_path)
    first.acquire(runtime_id="rt-first")
    first.update(console_url="http://127.0.0.1:1234")
    try:
        with pytest.raises(DataDirLocked) as caught:
            DataDirLock(tmp_path).acquire(runtime_id="rt-second")
        message = str(caught.value)
        assert f"pid {os.getpid()}" in message
        assert "runtime id rt-first" in message
        assert "console http://127.0.0.1:1234" in message
        assert caught.value.holder["runtime_id"] == "rt-first"
        assert _mode(tmp_path / LOCK_FILE) == 0o600
    finally:
        first.release()
    again = DataDirLock(tmp_path)
    again.acquire(runtime_id="rt-third")
    assert again.previous is None           # released cleanly: no holder to recover from
    again.release()


def test_a_second_started_app_is_refused_and_touches_nothing_of_the_first(
        make_app: Callable[..., OmniApp]) -> None:
    first = make_app("one")
    first.start()
    try:
        second = OmniApp("two", overrides={"data_dir": str(first.data_dir),
                                           "plugins_dir": str(first.config.plugins_dir)},
                         environ={}, entry_points=False, builtin_extensions=[])
        with pytest.raises(DataDirLocked, match=first.runtime_id):
            second.start()
        second.stop()
        first.kv.for_plugin("p").set("still", b"mine")   # the first host's storage is open
        assert first.data_lock.held
        with pytest.raises(DataDirLocked):
            DataDirLock(first.data_dir).acquire()
    finally:
        first.stop(grace=0)
    third = make_app("one")                 # once the first stops, the dir is free
    third.start()
    third.stop(grace=0)


_HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from omnicore.storage.datadir import DataDirLock
    lock = DataDirLock(Path(sys.argv[1]))
    lock.acquire(runtime_id="rt-killed")
    print("held", flush=True)
    time.sleep(600)
""")


def test_the_kernel_drops_the_lock_of_a_killed_holder(tmp_path: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        with pytest.raises(DataDirLocked, match="rt-killed"):
            DataDirLock(tmp_path).acquire()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.stdout is not None
    proc.stdout.close()
    lock = DataDirLock(tmp_path)
    lock.acquire(runtime_id="rt-next")
    try:
        assert lock.previous is not None and lock.previous["runtime_id"] == "rt-killed"
        assert lock.previous["pid"] == proc.pid
    finally:
        lock.release()
