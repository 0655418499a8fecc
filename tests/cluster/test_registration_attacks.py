"""Attacks on how a host joins the instance table (7b991d4f): a row is never seen without its
liveness lock, a registration leaves no other lock behind, and a heartbeat says when it was
written. On a real PostgreSQL (a fresh database per test), with real processes where a death
matters; the SQLite default presence beside it.

A reap here is asked with ``now`` two seconds ahead and a limit of 100 s: every row is then
past the lock's 1 s grace and far inside its heartbeat, so only its lock keeps it (no sleep
for the grace to pass)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.cluster import ClusterSettings, Membership
from omnicore.storage import SQLiteStorage, StorageError
from omnicore.storage.instance_rows import Instance
from omnicore.storage.postgres import PostgresStorage
from omnicore.storage.postgres.schema import LIVENESS_KEY
from tests.waiting import eventually

#: Far inside any row's heartbeat, past the lock's grace: only a held lock keeps a row.
_AHEAD_S, _LIMIT_S = 2.0, 100.0


def _me(rid: str, beat: float) -> Instance:
    return Instance(rid, "attack-host", os.getpid(), "0.1.0", beat, beat, f"http://{rid}")


def _reap_lockless(s: PostgresStorage, me: str) -> list[str]:
    return s.instances.reap(me, time.time() + _AHEAD_S, _LIMIT_S)


@pytest.fixture
def gate(pg_url: str) -> Iterator[Any]:
    """A connection of the test's own (the same role as the hosts'): pg_locks, the rows."""
    import psycopg

    conn = psycopg.connect(pg_url, autocommit=True)
    yield conn
    conn.close()


def _held(gate: Any) -> dict[int, int]:
    """The liveness locks granted in this database: slot -> the backend holding it."""
    return {int(slot): int(pid) for slot, pid in gate.execute(
        "SELECT objid::bigint, pid FROM pg_locks WHERE locktype = 'advisory' "
        "AND classid = CAST(%s AS oid) AND objsubid = 2 AND granted AND database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database())",
        (LIVENESS_KEY,)).fetchall()}


def _slots(gate: Any) -> dict[str, int]:
    return {str(r): int(s) for r, s in gate.execute(
        "SELECT runtime_id, slot FROM instances").fetchall()}


def _only_its_rows_locks(gate: Any, rid: str) -> int:
    """The slot of ``rid``'s row, which must be the one liveness lock held in the database."""
    slot = _slots(gate)[rid]
    assert set(_held(gate)) == {slot}, (slot, _held(gate))
    return slot


def test_registering_twice_holds_the_rows_slot_and_no_other(pg_url: str, gate: Any) -> None:
    """ON CONFLICT: the second registration's row names a slot whose lock is held, and the
    first one's lock is not left held beside it (one more lock for every registration a
    flapping host makes, for the life of its connection)."""
    s, other = PostgresStorage(pg_url), PostgresStorage(pg_url)
    try:
        s.instances.register(_me("rt-a", time.time()))
        first = _only_its_rows_locks(gate, "rt-a")
        for _ in range(3):
            s.instances.register(_me("rt-a", time.time()))
            _only_its_rows_locks(gate, "rt-a")
        assert _reap_lockless(other, "rt-other") == []
        assert first not in _held(gate) or _slots(gate)["rt-a"] == first
        s.instances.remove("rt-a")
        assert _held(gate) == {}  # a clean stop leaves nothing held
    finally:
        other.close()
        s.close()


def test_removed_then_registered_again_holds_a_lock_for_the_new_row(pg_url: str,
                                                                    gate: Any) -> None:
    s, other = PostgresStorage(pg_url), PostgresStorage(pg_url)
    try:
        s.instances.register(_me("rt-a", time.time()))
        s.instances.remove("rt-a")
        assert _held(gate) == {} and _slots(gate) == {}
        s.instances.register(_me("rt-a", time.time()))
        _only_its_rows_locks(gate, "rt-a")
        assert _reap_lockless(other, "rt-other") == []
        assert [i.runtime_id for i in other.instances.all()] == ["rt-a"]
    finally:
        other.close()
        s.close()


def test_a_host_declared_dead_comes_back_with_its_lock_held_and_no_other(
        pg_url: str, gate: Any) -> None:
    """A long pause: another host reaps the row by its stale heartbeat while the host still
    holds its lock; its heartbeat finds no row (None) and Membership registers again. The row
    is back with a held lock (a reaper can't take it at once again), and the registrations
    leave one lock held between them."""
    s, other = PostgresStorage(pg_url), PostgresStorage(pg_url)
    member = Membership(lambda: s, "rt-a", "0.1.0",
                        settings=ClusterSettings(heartbeat_s=0.05, dead_after_s=_LIMIT_S,
                                                 check_s=0.05))
    try:
        member.start()
        for n in range(3):
            _only_its_rows_locks(gate, "rt-a")
            # Its heartbeat "a hundred seconds old": reaped, whatever its lock says.
            assert other.instances.reap("rt-other", time.time() + _LIMIT_S + 10, _LIMIT_S) \
                == ["rt-a"]
            assert "rt-a" in {i.runtime_id for i in other.instances.lost(time.time())}
            eventually(lambda: "rt-a" in _slots(gate), f"rt-a registered again ({n})")
            _only_its_rows_locks(gate, "rt-a")
            assert _reap_lockless(other, "rt-other") == []
        # Back: no longer listed lost.
        assert "rt-a" not in {i.runtime_id for i in other.instances.lost(time.time())}
    finally:
        member.stop()
        other.close()
        s.close()
    assert _held(gate) == {}


def test_re_registering_while_another_reaps_never_shows_a_lockless_row(pg_url: str) -> None:
    """A host registering again and again (ON CONFLICT) while another host reaps all the
    time, every row past the lock's grace: not one reap may find the row without its lock
    (a registration that dropped the old slot's lock before the row named the new one
    would be reaped in that window)."""
    s, other = PostgresStorage(pg_url), PostgresStorage(pg_url)
    try:
        s.instances.register(_me("rt-a", time.time()))
        done = threading.Event()
        reaped: list[str] = []
        errors: list[BaseException] = []

        def reaper() -> None:
            try:
                while not done.is_set():
                    reaped.extend(_reap_lockless(other, "rt-other"))
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        thread = threading.Thread(target=reaper)
        thread.start()
        try:
            for _ in range(15):
                s.instances.register(_me("rt-a", time.time()))
        finally:
            done.set()
            thread.join(30)
        assert errors == [] and reaped == []
    finally:
        other.close()
        s.close()


def _liveness_pid(gate: Any, rid: str) -> int:
    return _held(gate)[_slots(gate)[rid]]


def test_a_registration_while_the_liveness_connection_is_cut_holds_its_lock(
        pg_url: str, gate: Any) -> None:
    """The server ends the storage's own connection (an operator's pg_terminate_backend, a
    failover) just before the host registers again: the row it writes must be held by the
    connection that replaces it, not listed without a lock."""
    s, other = PostgresStorage(pg_url), PostgresStorage(pg_url)
    try:
        s.instances.register(_me("rt-a", time.time()))
        for n in range(3):
            pid = _liveness_pid(gate, "rt-a")
            assert gate.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
            eventually(lambda gone=pid: gone not in _held(gate).values(),
                       f"backend {pid} gone ({n})")
            s.instances.register(_me("rt-a", time.time()))
            _only_its_rows_locks(gate, "rt-a")
            assert _liveness_pid(gate, "rt-a") != pid
            assert _reap_lockless(other, "rt-other") == []
    finally:
        other.close()
        s.close()


def test_a_registration_whose_lock_cannot_be_taken_writes_no_row(pg_url: str,
                                                                 gate: Any) -> None:
    """The pool answers but the storage's own connection can't be opened again (the database's
    connection limit reached: a loaded server): the registration fails, as an unreachable
    storage does, instead of listing a row no lock keeps, which every other host reaps at
    once (and the host flaps, reaped at every registration, until the connection is back)."""
    s = PostgresStorage(pg_url, connect_timeout_s=1.0)
    other = PostgresStorage(pg_url)
    db = gate.execute("SELECT current_database()").fetchone()[0]
    try:
        s.instances.register(_me("rt-a", time.time() - 50))
        pid = _liveness_pid(gate, "rt-a")
        # Every connection open now may stay; no new one may open (the role owns the database).
        gate.execute(f'ALTER DATABASE "{db}" CONNECTION LIMIT 1')
        try:
            gate.execute("SELECT pg_terminate_backend(%s)", (pid,))
            eventually(lambda: _held(gate) == {}, "the storage's own connection gone")
            with pytest.raises(StorageError, match="liveness"):
                s.instances.register(_me("rt-a", time.time()))
            # The row that was there (registered 50 s ago) is dead, nothing holds its lock,
            # and stays so: no registration wrote it fresh without one.
            (row,) = other.instances.all()
            assert row.heartbeat_at < time.time() - 40
            assert _reap_lockless(other, "rt-other") == ["rt-a"]
        finally:
            gate.execute(f'ALTER DATABASE "{db}" CONNECTION LIMIT -1')
        eventually(lambda: _held(gate) != {}, "the storage's own connection back")
        s.instances.register(_me("rt-a", time.time()))
        _only_its_rows_locks(gate, "rt-a")
        assert _reap_lockless(other, "rt-other") == []
    finally:
        other.close()
        s.close()


def test_a_first_registration_whose_lock_cannot_be_taken_lists_nothing(pg_url: str,
                                                                       gate: Any) -> None:
    """As above, for a host starting: its storage's pool opened, its own connection refused."""
    s = PostgresStorage(pg_url, connect_timeout_s=1.0)
    other = PostgresStorage(pg_url)
    db = gate.execute("SELECT current_database()").fetchone()[0]
    try:
        gate.execute(f'ALTER DATABASE "{db}" CONNECTION LIMIT 1')
        try:
            with pytest.raises(StorageError, match="liveness"):
                s.instances.register(_me("rt-new", time.time()))
            assert other.instances.all() == []
        finally:
            gate.execute(f'ALTER DATABASE "{db}" CONNECTION LIMIT -1')
        s.instances.register(_me("rt-new", time.time()))
        _only_its_rows_locks(gate, "rt-new")
        assert _reap_lockless(other, "rt-other") == []
    finally:
        other.close()
        s.close()


def test_a_member_declared_dead_whose_lock_cannot_be_taken_waits_as_in_an_outage(
        pg_url: str, gate: Any) -> None:
    """Membership, its row reaped (its heartbeat finds none) while its storage's own
    connection can't open: it does not write a row no lock keeps (reaped again at once, and
    again, a flapping host); it says the storage is unavailable and registers, with its lock,
    once the connection is back."""
    s = PostgresStorage(pg_url, connect_timeout_s=1.0)
    other = PostgresStorage(pg_url)
    db = gate.execute("SELECT current_database()").fetchone()[0]
    member = Membership(lambda: s, "rt-a", "0.1.0",
                        settings=ClusterSettings(heartbeat_s=0.05, dead_after_s=_LIMIT_S,
                                                 check_s=0.05))
    try:
        member.start()
        pid = _liveness_pid(gate, "rt-a")
        gate.execute(f'ALTER DATABASE "{db}" CONNECTION LIMIT 1')
        try:
            gate.execute("SELECT pg_terminate_backend(%s)", (pid,))
            eventually(lambda: _held(gate) == {}, "the storage's own connection gone")
            eventually(lambda: _reap_lockless(other, "rt-other") == ["rt-a"], "rt-a reaped")
            eventually(lambda: member.unavailable, "the registration again refused")
            assert _slots(gate) == {}  # nothing listed without its lock
        finally:
            gate.execute(f'ALTER DATABASE "{db}" CONNECTION LIMIT -1')
        eventually(lambda: "rt-a" in _slots(gate), "rt-a registered again")
        _only_its_rows_locks(gate, "rt-a")
        assert _reap_lockless(other, "rt-other") == []
        eventually(lambda: member.unavailable is None, "the outage over")
    finally:
        member.stop()
        other.close()
        s.close()


def test_a_registration_across_a_server_restart_holds_its_lock(pg_cluster: Any, pg_url: str,
                                                               gate: Any) -> None:
    """The server restarts under a registered host (every connection cut, the pool's and its
    own); the host registers again at once, as Membership does once its row is gone. The row
    it writes has its lock."""
    import psycopg

    s, other = PostgresStorage(pg_url), PostgresStorage(pg_url)
    try:
        s.instances.register(_me("rt-a", time.time()))
        pg_cluster.pg_ctl("restart", "-m", "fast", "-w", "-t", "60", "-l",
                          str(pg_cluster.root / "server.log"), "-o",
                          f"-p {pg_cluster.port} -k {pg_cluster.root} "
                          "-c listen_addresses=127.0.0.1 -c fsync=off")
        gate2 = psycopg.connect(pg_url, autocommit=True)
        try:
            def registered() -> bool:
                try:
                    s.instances.register(_me("rt-a", time.time()))
                except StorageError:
                    return False
                return True

            eventually(registered, "a registration after the restart", every=0.2)
            _only_its_rows_locks(gate2, "rt-a")

            def reaped() -> tuple[list[str]] | None:
                try:
                    return (_reap_lockless(other, "rt-other"),)
                except StorageError:
                    return None  # the other host's pool still reconnecting

            assert eventually(reaped, "a reap after the restart", every=0.2) == ([],)
        finally:
            gate2.close()
    finally:
        other.close()
        s.close()


_REGISTER_AT_THE_GATE = """
import os, sys
from omnicore.storage.instance_rows import Instance
from omnicore.storage.postgres import PostgresStorage
url, rid, key = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = PostgresStorage(url)
gate = s.backend._pool.getconn()
print("ready", flush=True)
gate.execute("SELECT pg_advisory_lock_shared(%s)", (key,))  # all released at once
s.backend._pool.putconn(gate)
import time
now = time.time()
s.instances.register(Instance(rid, "h", os.getpid(), "v", now, now))
print("registered", flush=True)
sys.stdin.read()  # until the test closes it (or kills this process)
"""


def test_hosts_registering_at_once_each_hold_their_own_slot_and_a_killed_one_goes(
        pg_url: str, gate: Any) -> None:
    """Three processes register at the same moment (a shared advisory lock the test holds,
    then lets go): three rows, three slots, each held by a different backend; a reaper finds
    none dead; SIGKILL one and it is reaped at once (its lock went with its process), the
    others stay."""
    key = 0x7E57
    gate.execute("SELECT pg_advisory_lock(%s)", (key,))
    procs = [subprocess.Popen([sys.executable, "-c", _REGISTER_AT_THE_GATE, pg_url, f"rt-{n}",
                               str(key)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for n in range(3)]
    other = PostgresStorage(pg_url)
    try:
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "ready"

        def waiting() -> bool:
            row = gate.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                               "AND objid = %s AND NOT granted", (key,)).fetchone()
            return row is not None and row[0] == 3

        eventually(waiting, "all three at the gate")
        gate.execute("SELECT pg_advisory_unlock(%s)", (key,))
        for p in procs:
            assert p.stdout is not None and p.stdout.readline().strip() == "registered"
        slots = _slots(gate)
        assert sorted(slots) == ["rt-0", "rt-1", "rt-2"]
        held = _held(gate)
        assert set(held) == set(slots.values())  # one lock per row, none other
        assert len(set(held.values())) == 3  # each its own backend
        assert _reap_lockless(other, "rt-other") == []
        procs[1].send_signal(signal.SIGKILL)
        procs[1].wait(30)
        assert eventually(lambda: _reap_lockless(other, "rt-other"),
                          "the killed host reaped") == ["rt-1"]
        assert sorted(i.runtime_id for i in other.instances.all()) == ["rt-0", "rt-2"]
        assert _reap_lockless(other, "rt-other") == []
    finally:
        other.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(30)
            for pipe in (p.stdin, p.stdout):
                if pipe is not None:
                    pipe.close()


_MEMBER = """
import sys
from omnicore.cluster import ClusterSettings, Membership
from omnicore.storage.postgres import PostgresStorage
s = PostgresStorage(sys.argv[1])
m = Membership(lambda: s, sys.argv[2], "v",
               settings=ClusterSettings(heartbeat_s=0.05, dead_after_s=100.0, check_s=0.05))
m.start()
print("registered", flush=True)
sys.stdin.read()  # until the test closes it
m.stop()
s.close()
"""


def test_a_stopped_process_reaped_meanwhile_comes_back_holding_one_lock(pg_url: str,
                                                                        gate: Any) -> None:
    """A real host process paused (SIGSTOP: a long GC, a frozen VM) past its heartbeat
    limit: another host reaps it, though its lock is still held (its connection stays open).
    Resumed, its heartbeat finds no row and it registers again: the row back with a held lock,
    the one lock its backend holds, no longer listed lost; a clean stop leaves none."""
    proc = subprocess.Popen([sys.executable, "-c", _MEMBER, pg_url, "rt-p"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    other = PostgresStorage(pg_url)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "registered"
        pid = _liveness_pid(gate, "rt-p")
        proc.send_signal(signal.SIGSTOP)
        try:
            assert _reap_lockless(other, "rt-other") == []  # its lock: alive
            assert other.instances.reap("rt-other", time.time() + _LIMIT_S + 10, _LIMIT_S) \
                == ["rt-p"]  # its heartbeat: dead
        finally:
            proc.send_signal(signal.SIGCONT)
        eventually(lambda: "rt-p" in _slots(gate), "rt-p registered again", watch=[proc])
        _only_its_rows_locks(gate, "rt-p")
        assert _liveness_pid(gate, "rt-p") == pid  # the same connection, one lock on it
        assert _reap_lockless(other, "rt-other") == []
        assert "rt-p" not in {i.runtime_id for i in other.instances.lost(time.time())}
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.wait(60) == 0
        assert _held(gate) == {} and _slots(gate) == {}
    finally:
        other.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def _stamp_behind_a_busy_pool(s: PostgresStorage, given_ago: float, register: bool) -> None:
    """A heartbeat (or a registration again) while the pool's one connection is held."""
    db = s.backend
    done = threading.Event()

    def write(given: float) -> None:
        if register:
            s.instances.register(_me("rt-a", given))
        else:
            assert s.instances.heartbeat("rt-a", given, 0) is not None
        done.set()

    with db._pool.connection():
        stats = db._pool.get_stats()
        queued, errors = stats.get("requests_queued", 0), stats.get("requests_errors", 0)
        given = time.time() - given_ago
        entered = time.monotonic()
        writing = threading.Thread(target=write, args=(given,))
        writing.start()
        eventually(lambda: db._pool.get_stats().get("requests_queued", 0) > queued,
                   "the write waiting for the pool")
        waiting = time.monotonic()  # it asked before this
        # Its first wait (connect_timeout_s) ends with the connection still held; it waits
        # on, the server being there (BUSY_WAIT_S).
        eventually(lambda: db._pool.get_stats().get("requests_errors", 0) > errors,
                   "the write's first wait to end")
        released = time.monotonic()
    writing.join(30)
    ended = time.monotonic()
    assert done.is_set()
    (row,) = s.instances.all()
    assert row.heartbeat_at >= given + (released - waiting)
    assert row.heartbeat_at <= given + (ended - entered)
    if not given_ago:
        assert row.heartbeat_at <= time.time()


def test_a_write_that_waited_for_the_pool_is_stamped_when_written(pg_url: str) -> None:
    """The pool's one connection busy: a heartbeat, and a registration again, wait for it.
    The row's stamp is the time given, moved on by at least that wait and never by more than
    the whole call took (never in the future of the write; an old time given is not made
    new)."""
    s = PostgresStorage(pg_url, max_connections=1, connect_timeout_s=1.0)
    try:
        s.instances.register(_me("rt-a", time.time()))
        eventually(s.backend.liveness.reachable, "the storage's own connection")
        for register in (False, True):
            _stamp_behind_a_busy_pool(s, 0.0, register)
            _stamp_behind_a_busy_pool(s, 50.0, register)
    finally:
        s.close()


def test_sqlites_presence_is_the_heartbeat_alone(tmp_path: Path) -> None:
    """The default Presence: no column, nothing claimed; a registration twice is one row,
    and a reap goes by the heartbeat only."""
    s = SQLiteStorage(tmp_path / "omnicore.db")
    try:
        presence = s.backend.presence
        assert presence.columns == () and presence.claim(s.backend, "rt-a") == []
        assert presence.dead(time.time(), 3.0) == ("", [])
        now = time.time()
        s.instances.register(_me("rt-a", now))
        s.instances.register(_me("rt-a", now))
        s.instances.register(_me("rt-b", now - 100))
        assert sorted(i.runtime_id for i in s.instances.all()) == ["rt-a", "rt-b"]
        assert s.instances.reap("rt-a", now, 3.0) == ["rt-b"]
        s.instances.remove("rt-a")
        s.instances.register(_me("rt-a", now))
        (row,) = s.instances.all()
        assert 0 <= row.heartbeat_at - now <= time.time() - now
    finally:
        s.close()
