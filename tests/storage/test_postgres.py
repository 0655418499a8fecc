"""What only the PostgreSQL backend has: shared by processes, migrations under a lock, a
server that is not there, passwords kept out of messages. The behaviour every backend shares
is in test_contract.py, which runs on PostgreSQL too."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from omnicore.storage import JobSpec, StorageError, open_storage
from omnicore.storage.instance_rows import Instance
from omnicore.storage.postgres import PostgresStorage, masked_url
from omnicore.storage.postgres.schema import LIVENESS_KEY, SCHEMA_VERSION
from tests.waiting import eventually

_OPEN_AND_WRITE = """
import sys
from omnicore.storage.postgres import PostgresStorage
s = PostgresStorage(sys.argv[1])
s.kv("p").incr("starts", 1)
print(s.backend.schema_version)
s.close()
"""


def test_several_processes_start_at_once_on_an_empty_database(pg_url: str) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", _OPEN_AND_WRITE, pg_url],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, [err for _, err in outs]
    assert {out.strip() for out, _ in outs} == {str(SCHEMA_VERSION)}
    s = PostgresStorage(pg_url)
    try:
        assert s.kv("p").get("starts") == b"4"  # every process wrote, none lost a migration
    finally:
        s.close()


def test_the_role_owns_its_database_and_is_not_a_superuser(pg_url: str) -> None:
    s = PostgresStorage(pg_url)
    try:
        assert s.backend.read("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") \
            == [(False,)]
    finally:
        s.close()


def test_two_instances_share_the_queue_and_each_job_is_claimed_once(pg_url: str) -> None:
    a, b = PostgresStorage(pg_url), PostgresStorage(pg_url)
    try:
        ids = [a.queue.add(JobSpec("p", "h", b"%d" % i, time.time())) for i in range(60)]
        got: dict[str, list[int]] = {"a": [], "b": []}
        # Every claimer holds its first job until all four hold one: both instances take
        # work however the threads are scheduled (a loaded machine ran one drain to the end
        # before another started).
        first = threading.Barrier(4, timeout=30)

        def drain(name: str, store: PostgresStorage) -> None:
            held = False
            while (task := store.queue.claim(name, time.time(), 30)) is not None:
                got[name].append(task.id)
                if not held:
                    first.wait()
                    held = True
                assert store.queue.finish(task.id, name, time.time())

        threads = [threading.Thread(target=drain, args=(n, s)) for n, s in
                   (("a", a), ("b", b), ("a", a), ("b", b))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        claimed = got["a"] + got["b"]
        assert sorted(claimed) == sorted(ids)  # every job once, none twice
        assert got["a"] and got["b"]  # both instances took work
    finally:
        a.close()
        b.close()


def test_a_kv_write_through_one_instance_is_read_through_another_at_once(pg_url: str) -> None:
    a, b = PostgresStorage(pg_url), PostgresStorage(pg_url)
    try:
        a.kv("p").set("k", b"v1")
        assert b.kv("p").get("k") == b"v1"
        b.kv("p").set("k", b"v2")
        assert a.kv("p").get("k") == b"v2"
    finally:
        a.close()
        b.close()


def test_quota_holds_across_instances_writing_at_once(pg_url: str) -> None:
    from omnicore.storage import KVQuota, QuotaExceeded

    quota = KVQuota(max_keys=10)
    stores = [PostgresStorage(pg_url) for _ in range(3)]
    refused = []

    def write(store: PostgresStorage, base: int) -> None:
        for i in range(10):
            try:
                store.kv("p").set(f"k{base + i}", b"x", quota)
            except QuotaExceeded:
                refused.append(1)

    threads = [threading.Thread(target=write, args=(s, n * 100)) for n, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    try:
        assert len(stores[0].kv("p").list("")) == 10
        assert stores[0].kv("p").usage().keys == 10
        assert len(refused) == 20
    finally:
        for s in stores:
            s.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_an_unreachable_server_fails_fast_with_the_password_masked() -> None:
    url = f"postgresql://omnicore:hunter2@127.0.0.1:{_closed_port()}/omnicore"
    started = time.monotonic()
    with pytest.raises(StorageError) as err:
        PostgresStorage(url, connect_timeout_s=1.0)
    assert time.monotonic() - started < 10
    assert "hunter2" not in str(err.value)
    assert "omnicore:***@127.0.0.1" in str(err.value)
    assert "cannot open" in str(err.value)


def test_masked_url_hides_only_the_password() -> None:
    assert masked_url("postgresql://u:p%40ss@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert masked_url("postgresql://u@db/x") == "postgresql://u@db/x"
    assert masked_url("postgresql://db/x") == "postgresql://db/x"


def test_a_stopped_server_turns_into_storage_errors_and_recovers(pg_cluster: Any,
                                                                 pg_url: str) -> None:
    s = PostgresStorage(pg_url, connect_timeout_s=1.0)
    try:
        # The storage's own connection runs, as in a host: it sees the server go, so a
        # caller is not kept waiting as for a busy pool (BUSY_WAIT_S would pass the bound).
        s.backend.on_wakeup(lambda: None)
        eventually(s.backend.liveness.reachable, "the storage's own connection")
        s.kv("p").set("k", b"before")
        pg_cluster.pg_ctl("stop", "-m", "fast", "-w")
        try:
            started = time.monotonic()
            with pytest.raises(StorageError):
                s.kv("p").get("k")
            assert time.monotonic() - started < 10  # never hangs a caller
        finally:
            pg_cluster.pg_ctl("start", "-w", "-t", "60", "-l",
                              str(pg_cluster.root / "server.log"), "-o",
                              f"-p {pg_cluster.port} -k {pg_cluster.root} "
                              "-c listen_addresses=127.0.0.1 -c fsync=off")
        def read() -> bytes | None:
            try:
                return s.kv("p").get("k")
            except StorageError:
                return None

        # The pool replaces its broken connections by itself.
        assert eventually(read, "a read after the restart", every=0.2) == b"before"
    finally:
        s.close()


def test_a_busy_pool_is_waited_for_past_the_connect_timeout(pg_url: str) -> None:
    """Every connection in use (the pool's only one, held by another caller) while the server
    answers: a caller waits on past ``connect_timeout_s`` and gets its connection, instead of
    being told the storage failed (a host starting on a loaded machine, its pool's
    connections opening slowly, failed its start so)."""
    s = PostgresStorage(pg_url, max_connections=1, connect_timeout_s=1.0)
    try:
        db = s.backend
        db.on_wakeup(lambda: None)  # the storage's own connection, as in a host
        eventually(db.liveness.reachable, "the storage's own connection")
        got: list[bytes | None] = []
        with db._pool.connection():
            reader = threading.Thread(target=lambda: got.append(s.kv("p").get("k")))
            reader.start()
            # The reader's first wait (connect_timeout_s) ended with the connection held.
            eventually(lambda: db._pool.get_stats().get("requests_errors", 0) >= 1,
                       "the reader's first wait to end")
        reader.join(30)
        assert got == [None]
    finally:
        s.close()


def test_storage_url_chooses_postgres_and_config_show_masks_its_password(
        pg_url: str, tmp_path: Any, make_app: Any) -> None:
    import json

    from omnicore.config import load_config, render_config

    app = make_app(overrides={"storage": {"url": pg_url}})
    app.storage.kv("p").set("k", b"through the app")
    assert isinstance(app.storage, PostgresStorage)
    other = PostgresStorage(pg_url)
    try:
        assert other.kv("p").get("k") == b"through the app"
    finally:
        other.close()
    (tmp_path / "omnicore.yaml").write_text(json.dumps({"storage": {"url": pg_url}}))
    rows = {k: v for k, v, _ in render_config(load_config(tmp_path / "omnicore.yaml"))}
    assert rows["storage.url"] == pg_url.replace(":omnicore@", ":***@")
    assert "omnicore:omnicore@" not in json.dumps(rows)


def test_storage_url_must_be_postgresql(tmp_path: Any) -> None:
    from omnicore.config import load_config
    from omnicore.errors import ConfigError

    (tmp_path / "omnicore.yaml").write_text("storage: {url: 'mysql://db/x'}\n")
    with pytest.raises(ConfigError, match="postgresql://"):
        load_config(tmp_path / "omnicore.yaml")


def _instance(rid: str, now: float) -> Any:
    return Instance(rid, "host", 1, "0.1.0", now, now, f"http://{rid}")


_HOLD_AND_DIE = """
import os, sys, time
from omnicore.storage.instance_rows import Instance
from omnicore.storage.postgres import PostgresStorage
s = PostgresStorage(sys.argv[1])
now = time.time()
s.instances.register(Instance("rt-victim", "h", os.getpid(), "v", now, now))
task = s.queue.claim("rt-victim", time.time(), 3600)
print(task.id, flush=True)
time.sleep(600)
"""


def test_a_sigkilled_instance_is_reaped_at_once_and_its_jobs_are_due_again(pg_url: str) -> None:
    """The liveness lock goes with the dead process's connection: the reaper does not wait
    for the 3 s heartbeat, and the job's hour-long lease does not matter."""
    import signal

    s = PostgresStorage(pg_url)
    try:
        job = s.queue.add(JobSpec("p", "h", b"x", time.time()))
        victim = subprocess.Popen([sys.executable, "-c", _HOLD_AND_DIE, pg_url],
                                  stdout=subprocess.PIPE, text=True)
        assert victim.stdout is not None
        assert int(victim.stdout.readline()) == job
        me = _instance("rt-me", time.time())
        s.instances.register(me)
        assert {i.runtime_id for i in s.instances.all()} == {"rt-victim", "rt-me"}
        assert s.instances.reap("rt-me", time.time(), 3.0) == []  # alive: holds its lock
        assert s.queue.claim("rt-me", time.time(), 30) is None  # leased for an hour
        time.sleep(1.1)  # past the reconnect grace, well inside the 3 s heartbeat window
        assert s.instances.reap("rt-me", time.time(), 3.0) == []
        victim.send_signal(signal.SIGKILL)
        victim.wait(10)
        victim.stdout.close()
        killed = time.monotonic()
        dead = eventually(lambda: s.instances.reap("rt-me", time.time(), 3.0),
                          "the dead instance reaped")
        assert time.monotonic() - killed < 2.0, "the dead instance was noticed late"
        assert dead == ["rt-victim"]
        task = s.queue.claim("rt-me", time.time(), 30)
        assert task is not None and task.id == job
        assert task.attempts == 2  # the second delivery: at-least-once, counted
        assert [i.runtime_id for i in s.instances.all()] == ["rt-me"]
    finally:
        s.close()


def test_a_registration_holds_its_lock_before_its_row_exists_and_is_stamped_when_written(
        pg_url: str) -> None:
    """A row seen without its liveness lock is dead to every reaper, and a heartbeat older
    than the limit is too: a registration that waited (for its lock, a pooled connection;
    a loaded host starting) must neither show its row before the lock is held nor land with
    the time it was asked for. A rolling upgrade's new host was reaped by the old one so."""
    import psycopg

    s, other = PostgresStorage(pg_url), PostgresStorage(pg_url)
    gate = psycopg.connect(pg_url, autocommit=True)
    try:
        last, called = gate.execute("SELECT last_value, is_called FROM instance_slots"
                                    ).fetchone()  # type: ignore[misc]
        slot = last + 1 if called else last  # the slot the registration draws
        gate.execute("SELECT pg_advisory_lock(%s, %s)", (LIVENESS_KEY, slot))
        given = time.time() - 10
        entered = time.time()
        registering = threading.Thread(target=s.instances.register,
                                       args=(_instance("rt-new", given),))
        registering.start()

        def waiting() -> bool:
            found = gate.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                                 "AND objid = %s AND objsubid = 2 AND NOT granted",
                                 (slot,)).fetchone()
            return found is not None and found[0] == 1

        eventually(waiting, "the registration waiting for its slot's lock")
        assert other.instances.all() == []  # nothing a reaper could find without its lock
        released = time.time()
        gate.execute("SELECT pg_advisory_unlock(%s, %s)", (LIVENESS_KEY, slot))
        registering.join(30)
        assert not registering.is_alive()
        (row,) = other.instances.all()
        # Stamped when written: the time given, moved on by at least the wait for the lock.
        assert row.heartbeat_at >= given + (released - entered)
    finally:
        gate.close()
        other.close()
        s.close()


def test_heartbeat_drain_and_a_stale_instance(pg_url: str) -> None:
    s = PostgresStorage(pg_url)
    try:
        now = time.time()
        s.instances.register(_instance("rt-a", now))
        beat = s.instances.heartbeat("rt-a", now + 1, jobs_held=3, console_url="http://a:1")
        assert beat is not None and beat.jobs_held == 3 and beat.console_url == "http://a:1"
        assert beat.draining is False
        assert s.instances.set_draining("rt-a", True) is True
        assert s.instances.set_draining("rt-nobody", True) is False
        beat = s.instances.heartbeat("rt-a", now + 2, jobs_held=0)
        assert beat is not None and beat.draining is True
        # Another instance whose heartbeat stopped 5 s ago (no lock ever taken) is dead.
        other = PostgresStorage(pg_url)
        try:
            other.instances.register(_instance("rt-old", now - 5))
            other.backend.liveness.release()
            other.instances.heartbeat("rt-old", now - 5, 0)
            assert s.instances.reap("rt-a", now, 3.0) == ["rt-old"]
            assert other.instances.heartbeat("rt-old", now, 0) is None  # must re-register
        finally:
            other.close()
        s.instances.remove("rt-a")
        assert s.instances.all() == []
    finally:
        s.close()


@pytest.fixture
def two(pg_url: str) -> Iterator[tuple[PostgresStorage, PostgresStorage]]:
    """Two storage objects on one database, as two instances have; the second listens."""
    a, b = PostgresStorage(pg_url), PostgresStorage(pg_url)
    up = threading.Event()
    b.on_settings(up.set)  # called once its listening connection is up (LISTEN done)
    eventually(up.is_set, "the second's listening connection")
    yield a, b
    a.close()
    b.close()


def test_an_enqueue_on_one_instance_wakes_another_through_notify(
        two: tuple[PostgresStorage, PostgresStorage]) -> None:
    a, b = two
    woke = threading.Event()
    b.on_wakeup(woke.set)
    a.queue.add(JobSpec("p", "h", b"x", time.time()))
    assert woke.wait(5)


def test_a_burst_of_events_from_another_instance_arrives_in_order_in_few_calls(
        two: tuple[PostgresStorage, PostgresStorage]) -> None:
    a, b = two
    calls: list[list[int]] = []
    sent_all = threading.Event()

    def busy(batch: list[int]) -> None:
        # The first callback holds the listener until the whole burst is committed, so what
        # arrives meanwhile is waiting when it returns: whether a fast listener would have
        # seen each event alone no longer depends on how fast this machine commits.
        calls.append(batch)
        sent_all.wait(10)

    b.on_event(busy)
    sent = [a.events.append("plugin.p.t", "p", b"x", retain=1000) for _ in range(300)]
    sent_all.set()
    eventually(lambda: sum(map(len, calls)) >= 300, "the burst's 300 events delivered")
    assert [e for batch in calls for e in batch] == sent
    assert len(calls) <= 10  # what waited is one callback (and one query), not one per event
    own = b.events.append("plugin.p.t", "p", b"own", retain=1000)  # its own: not echoed
    last = a.events.append("plugin.p.t", "p", b"x", retain=1000)
    # Notifications come in commit order: once A's later event is here, B's own would be too.
    eventually(lambda: last in (e for batch in calls for e in batch), "A's later event")
    assert [e for batch in calls for e in batch][300:] == [last] and own not in sent


def test_a_job_enqueue_wakes_only_the_job_queue_and_a_reap_wakes_every_queue(
        two: tuple[PostgresStorage, PostgresStorage]) -> None:
    # The workflow step workers must not go to the database on every job enqueue.
    a, b = two
    jobs, steps = threading.Event(), threading.Event()
    b.on_wakeup(jobs.set, "jobs")
    b.on_wakeup(steps.set, "steps")
    for _ in range(50):  # a burst: each notification names the queue
        a.queue.add(JobSpec("p", "h", b"x", time.time()))
    assert jobs.wait(5)
    time.sleep(0.5)
    assert not steps.is_set()
    now = time.time()
    a.instances.register(Instance("gone", "h", 1, "v", now - 60, now - 60, None))
    assert a.instances.reap("me", now, 3.0) == ["gone"]
    assert steps.wait(5)


def test_a_settings_change_on_one_instance_notifies_another(pg_url: str) -> None:
    a, b = PostgresStorage(pg_url), PostgresStorage(pg_url)
    heard = threading.Event()
    try:
        b.on_settings(heard.set)
        # Its listening connection is up: its connect calls back.
        eventually(heard.is_set, "b's listening connection")
        heard.clear()
        rec = a.plugin_settings.change("echo", lambda d: {"enabled": False}, by=None, at=1.0)
        assert heard.wait(5)
        assert b.plugin_settings.changes(rec.seq - 1) == [rec]
    finally:
        a.close()
        b.close()


def test_a_step_claimed_on_one_instance_is_not_claimed_on_another_until_its_owner_dies(
        pg_url: str) -> None:
    from omnicore.storage.workflows import NewStep

    a, b = PostgresStorage(pg_url), PostgresStorage(pg_url)
    try:
        created = a.workflows.create_run("wf", "v1", {"x": 1}, None, "test")
        assert created is not None
        run_id = created[0]
        assert a.workflows.add_steps(run_id, [NewStep("s1", -1, "queued", {"x": 1})]) == 1
        step = a.workflows.claim("rt-a", time.time(), 3600)
        assert step is not None and step.step == "s1"
        assert b.workflows.claim("rt-b", time.time(), 3600) is None  # leased for an hour
        b.instances.register(_instance("rt-b", time.time()))
        a.instances.register(_instance("rt-a", time.time() - 10))
        a.backend.liveness.release()
        a.instances.heartbeat("rt-a", time.time() - 10, 0)
        assert b.instances.reap("rt-b", time.time(), 3.0) == ["rt-a"]
        again = b.workflows.claim("rt-b", time.time(), 30)
        assert again is not None and (again.run_id, again.step) == (run_id, "s1")
        assert again.attempt == 2
    finally:
        a.close()
        b.close()


def test_accounts_and_secrets_on_postgres_are_shared_by_every_instance(
        pg_url: str, tmp_path: Any) -> None:
    from omnicore.storage.secret_rows import Sealed

    one, two = open_storage(tmp_path / "one", url=pg_url), open_storage(tmp_path / "two",
                                                                         url=pg_url)
    try:
        assert one.users.add("ada", "hash", "admin", 1.0) is True
        token = one.users.add_token("digest-1", "ci", "ada", 2.0)
        user = two.users.token_user("digest-1", 3.0)  # a token made through one instance
        assert user is not None and user.name == "ada"
        assert [t.last_used for t in one.users.tokens("ada") if t.id == token] == [3.0]
        one.secrets.put("api", Sealed("k1", b"n" * 12, b"sealed"), 4.0)
        assert two.secrets.get("api") == Sealed("k1", b"n" * 12, b"sealed")
        assert not (tmp_path / "one" / "console.db").exists()  # nothing kept per instance
    finally:
        one.close()
        two.close()


def test_every_instance_answers_vector_queries_with_every_acknowledged_vector(
        pg_url: str, tmp_path: Any) -> None:
    """Each instance's HNSW index is a cache of the shared rows, caught up from the change
    sequence before it answers: never a shared file, never a stale answer."""
    from omnicore.storage.vectors import VectorStore

    a, b = PostgresStorage(pg_url), PostgresStorage(pg_url)
    stores = [VectorStore(a.vectors, tmp_path / "a", shared=True),
              VectorStore(b.vectors, tmp_path / "b", shared=True)]
    va, vb = (store.for_plugin("p") for store in stores)
    try:
        va.upsert("docs", "one", [1.0, 0.0, 0.0], {"n": 1})
        assert [h.id for h in vb.search("docs", [1.0, 0.0, 0.0], k=5)] == ["one"]  # b loads
        va.upsert("docs", "two", [0.0, 1.0, 0.0], {"n": 2})  # after b's index was built
        vb.upsert("docs", "three", [0.0, 0.0, 1.0])
        hits = vb.search("docs", [0.0, 1.0, 0.0], k=5)
        assert hits[0].id == "two" and hits[0].metadata == {"n": 2}
        assert sorted(h.id for h in va.search("docs", [1.0, 1.0, 1.0], k=5)) == [
            "one", "three", "two"]
        assert va.delete("docs", "one") is True
        assert "one" not in [h.id for h in vb.search("docs", [1.0, 0.0, 0.0], k=5)]
        va.upsert("docs", "two", [1.0, 0.0, 0.0], {"n": 22})  # moved and relabelled
        hit = vb.search("docs", [1.0, 0.0, 0.0], k=1)[0]
        assert (hit.id, hit.metadata) == ("two", {"n": 22})
    finally:
        for store in stores:  # its flusher first, or it retries against a closed pool
            store.close()
        a.close()
        b.close()
