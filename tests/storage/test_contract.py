"""The storage contract for kv, the job queue, schedules and the event log: every backend must
pass these (SQLite, and PostgreSQL on a private cluster the tests start: tests/pgcluster.py).

They use nothing but the interface of omnicore.storage.base, so a backend joins by adding one
entry to conftest's BACKENDS; the other stores have a ``test_contract_<store>.py`` each.
"""

from __future__ import annotations

import threading
import time

import pytest

from omnicore.storage import (
    JobSpec,
    KVQuota,
    NotAnInteger,
    QuotaExceeded,
    Storage,
    ValueTooLarge,
)
from omnicore.storage.base import Appended, KeyedJob


@pytest.fixture
def store(storage: Storage) -> Storage:
    return storage


# -- kv -------------------------------------------------------------------------------------

def test_kv_round_trip_and_sorted_prefix_list(store: Storage) -> None:
    kv = store.kv("a")
    assert kv.get("k") is None
    kv.set("k", b"\x00\xffbytes")
    assert kv.get("k") == b"\x00\xffbytes"
    for key in ("user:b", "user:a", "userx", "team:z", "user:é"):
        kv.set(key, b"1")
    assert kv.list("user:") == ["user:a", "user:b", "user:é"]
    assert kv.list("") == sorted(["k", "user:b", "user:a", "userx", "team:z", "user:é"])
    assert kv.list("user:", limit=2) == ["user:a", "user:b"]
    assert kv.delete("k") is True
    assert kv.delete("k") is False
    assert kv.get("k") is None


def test_kv_scopes_never_cross(store: Storage) -> None:
    a, b = store.kv("a"), store.kv("b")
    a.set("secret", b"a's")
    b.set("secret", b"b's")
    assert a.get("secret") == b"a's"
    assert b.get("secret") == b"b's"
    assert b.delete("only-a") is False
    a.set("only-a", b"x")
    assert b.get("only-a") is None
    assert b.delete("only-a") is False
    assert a.get("only-a") == b"x"
    assert b.list("") == ["secret"]
    assert b.incr("only-a", 1) == 1  # b's own key of that name
    assert a.get("only-a") == b"x"
    assert sorted(store.kv_plugins()) == ["a", "b"]


def test_kv_incr_is_decimal_and_refuses_non_integers(store: Storage) -> None:
    kv = store.kv("p")
    assert kv.incr("n", 5) == 5
    assert kv.incr("n", -7) == -2
    assert kv.get("n") == b"-2"
    kv.set("text", b"12a")
    with pytest.raises(NotAnInteger):
        kv.incr("text", 1)
    assert kv.get("text") == b"12a"
    kv.set("big", str(2**63 - 1).encode())
    with pytest.raises(NotAnInteger):
        kv.incr("big", 1)
    assert kv.get("big") == str(2**63 - 1).encode()


def test_kv_quotas_refuse_atomically(store: Storage) -> None:
    kv = store.kv("q")
    quota = KVQuota(max_bytes=100, max_keys=3, max_value_bytes=40)
    with pytest.raises(ValueTooLarge):
        kv.set("v", b"x" * 41, quota)
    assert kv.get("v") is None
    for k in ("a", "b", "c"):
        kv.set(k, b"x" * 30, quota)
    assert kv.usage().keys == 3 and kv.usage().bytes == 93
    with pytest.raises(QuotaExceeded):
        kv.set("d", b"x", quota)  # a fourth key
    kv.set("a", b"y" * 30, quota)  # replacing stays within quota
    with pytest.raises(QuotaExceeded):
        kv.set("a", b"y" * 38, quota)  # 93 - 31 + 39 = 101 bytes
    assert kv.get("a") == b"y" * 30
    with pytest.raises(QuotaExceeded):
        kv.incr("new", 1, quota)
    assert kv.get("new") is None
    kv.delete("c")
    assert kv.usage().keys == 2 and kv.usage().bytes == 62
    kv.set("d", b"x", quota)


def test_kv_quota_rule_matches_admit_on_every_path(store: Storage) -> None:
    """Random sets, incrs and deletes under tight quotas, replayed on a model that asks
    KVQuota.admit: every write is admitted or refused as the model says, and the usage the
    store keeps is the model's after each step (the SQLite backend checks the rule in SQL)."""
    import random

    kv = store.kv("m")
    rng = random.Random(25)
    quotas = [KVQuota(max_bytes=60, max_keys=4, max_value_bytes=24),
              KVQuota(max_bytes=30, max_keys=2, max_value_bytes=24)]  # lowered: over quota
    model: dict[str, bytes] = {}
    keys = ["a", "bb", "ccc", "dddd", "é", "n"]
    for step in range(400):
        quota = quotas[step // 200]
        op, key = rng.choice(["set", "set", "set", "incr", "delete"]), rng.choice(keys)
        usage = (len(model), sum(len(k.encode()) + len(v) for k, v in model.items()))
        old = model.get(key)
        old_size = None if old is None else len(key.encode()) + len(old)
        if op == "delete":
            assert kv.delete(key) is (old is not None), step
            model.pop(key, None)
        else:
            if op == "incr":
                if old is not None and not old.lstrip(b"-").isdigit():
                    model[key] = old = b"7"
                    kv.set(key, old, KVQuota(max_bytes=10**6))
                    usage = (len(model), sum(len(k.encode()) + len(v)
                                             for k, v in model.items()))
                value = str(int(old or b"0") + 1).encode()
            else:
                value = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 30)))
            try:
                quota.admit("m", key, value, old_size, usage)
                expected: type[Exception] | None = None
            except (QuotaExceeded, ValueTooLarge) as refused:
                expected = type(refused)
            if expected is None:
                if op == "incr":
                    assert kv.incr(key, 1, quota) == int(value), step
                else:
                    kv.set(key, value, quota)
                model[key] = value
            else:
                with pytest.raises(expected):
                    kv.incr(key, 1, quota) if op == "incr" else kv.set(key, value, quota)
        assert kv.get(key) == model.get(key), step
        assert (kv.usage().keys, kv.usage().bytes) == (
            len(model), sum(len(k.encode()) + len(v) for k, v in model.items())), step


def test_kv_incr_is_atomic_across_threads(store: Storage) -> None:
    kv = store.kv("t")

    def work() -> None:
        for _ in range(200):
            kv.incr("n", 1)
    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert kv.get("n") == b"800"
    assert kv.usage().keys == 1


# -- jobs -------------------------------------------------------------------------------------

def _enqueue(store: Storage, plugin: str, handler: str = "h", run_at: float = 0.0,
             max_queued: int = 100) -> int:
    return store.jobs(plugin).enqueue(handler, b"{}", run_at, max_attempts=3, backoff_ms=10,
                                      max_queued=max_queued)


def test_jobs_claim_lease_finish(store: Storage) -> None:
    first = _enqueue(store, "a")
    later = _enqueue(store, "a", run_at=time.time() + 3600)
    now = time.time()
    job = store.queue.claim("w1", now, 30)
    assert job is not None and job.id == first and job.attempts == 1
    assert job.state == "running" and job.owner == "w1"
    assert store.queue.claim("w2", now, 30) is None  # the other is not due
    assert store.queue.finish(first, "w2", now) is False  # not w2's lease
    assert store.queue.finish(first, "w1", now) is True
    done = store.queue.get(first)
    assert done is not None and done.state == "succeeded"
    assert done.owner == "w1" and done.runs == ("w1",)  # who ran it, after the lease ended
    assert store.queue.next_due() == pytest.approx(store.queue.get(later).run_at)  # type: ignore[union-attr]
    assert store.queue.counts() == {("a", "succeeded"): 1, ("a", "queued"): 1}


def test_jobs_keep_what_their_handler_answered(store: Storage) -> None:
    from omnicore.storage.stores.jobs import RESULT_KEEP

    ids = [_enqueue(store, "r") for _ in range(3)]
    now = time.time()
    for job_id, result in zip(ids, (b'{"exit_code": 0}', b"\xff" * (RESULT_KEEP + 10), None),
                              strict=True):
        assert store.queue.claim("w", now, 30) is not None
        assert store.queue.finish(job_id, "w", now, result) is True
    text, binary, none = (store.queue.get(i) for i in ids)
    assert text is not None and text.result == b'{"exit_code": 0}'
    assert text.as_dict()["result"] == '{"exit_code": 0}'
    assert binary is not None and binary.result == b"\xff" * RESULT_KEEP  # its first 64 KiB
    shown = binary.as_dict(payload_preview=4)
    assert shown["result_encoding"] == "base64" and shown["result_bytes"] == RESULT_KEEP
    assert none is not None and none.result is None and none.as_dict()["result"] is None
    assert store.queue.list(plugin="r", limit=5)[0].result is None  # listed with it


def test_jobs_expired_lease_is_delivered_again(store: Storage) -> None:
    tid = _enqueue(store, "a")
    now = time.time()
    assert store.queue.claim("dead-host", now, 0.5) is not None
    assert store.queue.claim("w", now + 0.1, 30) is None
    again = store.queue.claim("w", now + 1, 30)
    assert again is not None and again.id == tid and again.attempts == 2
    assert again.runs == ("dead-host", "w")  # each delivery's host
    assert store.queue.finish(tid, "dead-host", now + 2) is False  # lost its lease
    assert store.queue.fail(tid, "w", now + 2, "boom", retry_at=None) == "dead"
    dead = store.queue.get(tid)
    assert dead is not None and dead.owner == "w" and dead.as_dict()["runs"] == ["dead-host", "w"]


def test_jobs_an_expired_lease_is_claimed_before_the_due_backlog(store: Storage) -> None:
    # A dead host's job must not wait behind a queue of older due jobs (the takeover bound).
    now = time.time()
    lost = _enqueue(store, "a", run_at=now - 10)
    assert store.queue.claim("dead-host", now, 0.5) is not None
    older = store.queue.add(JobSpec("p", "b", b"", now - 100))
    first, second = store.queue.claim("w", now + 1, 30), store.queue.claim("w", now + 1, 30)
    assert first is not None and first.id == lost and first.attempts == 2
    assert second is not None and second.id == older


def test_jobs_fail_retry_then_dead_and_operator_retry(store: Storage) -> None:
    tid = _enqueue(store, "a")
    now = time.time()
    store.queue.claim("w", now, 30)
    assert store.queue.fail(tid, "w", now, "boom 1", retry_at=now + 5) == "queued"
    assert store.queue.claim("w", now + 1, 30) is None
    store.queue.claim("w", now + 6, 30)
    assert store.queue.fail(tid, "w", now + 6, "boom 2", retry_at=None) == "dead"
    job = store.queue.get(tid)
    assert job is not None and job.state == "dead" and job.last_error == "boom 2"
    assert job.attempts == 2
    assert store.queue.retry(tid, now + 7) is True
    fresh = store.queue.claim("w", now + 8, 30)
    assert fresh is not None and fresh.id == tid and fresh.attempts == 1


def test_jobs_an_idempotency_key_makes_one_job_across_racing_callers(store: Storage) -> None:
    spec = JobSpec("p", "h", b"x", 0.0)
    made: list[tuple[int, str, bool]] = []
    lock = threading.Lock()

    def add() -> None:
        got = store.queue.add_keyed(spec, "k1", "d1", 1000.0, 60.0)
        with lock:
            made.append(got)
    threads = [threading.Thread(target=add) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({m[0] for m in made}) == 1 and sorted(m[2] for m in made) == [False] * 5 + [True]
    job_id = made[0][0]
    assert [j.id for j in store.queue.list()] == [job_id]
    # Another request under the key answers the first one's digest, and makes nothing.
    assert store.queue.add_keyed(spec, "k1", "d2", 1030.0, 60.0) == (job_id, "d1", False)
    # A day later (keep_s) the key is free again.
    again = store.queue.add_keyed(spec, "k1", "d2", 1061.0, 60.0)
    assert again[1:] == ("d2", True) and again[0] != job_id


def test_jobs_scoped_per_plugin(store: Storage) -> None:
    mine = _enqueue(store, "a")
    assert store.jobs("b").get(mine) is None
    assert store.jobs("b").cancel(mine) is None
    assert store.queue.get(mine).state == "queued"  # type: ignore[union-attr]
    assert store.jobs("a").cancel(mine) is True
    assert store.jobs("a").cancel(mine) is False
    assert store.jobs("a").cancel(10**9) is None


def test_jobs_queue_quota_counts_pending_only(store: Storage) -> None:
    for _ in range(2):
        _enqueue(store, "a", max_queued=2)
    with pytest.raises(QuotaExceeded):
        _enqueue(store, "a", max_queued=2)
    _enqueue(store, "b", max_queued=2)  # another plugin's quota is its own
    job = store.queue.claim("w", time.time(), 30)
    assert job is not None
    store.queue.finish(job.id, "w", time.time())
    _enqueue(store, "a", max_queued=2)


def test_jobs_release_gives_back_without_an_attempt(store: Storage) -> None:
    tid = _enqueue(store, "a")
    store.queue.claim("w", time.time(), 30)
    store.queue.release("w", [tid])
    job = store.queue.get(tid)
    assert job is not None and job.state == "queued" and job.attempts == 0


def test_jobs_concurrent_claims_never_share_a_job(store: Storage) -> None:
    ids = {_enqueue(store, "a") for _ in range(60)}
    got: list[int] = []
    lock = threading.Lock()

    def worker(name: str) -> None:
        while (job := store.queue.claim(name, time.time(), 30)) is not None:
            with lock:
                got.append(job.id)
    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(ids)


# -- schedules and events ---------------------------------------------------------------------

def test_schedule_advance_is_compare_and_set(store: Storage) -> None:
    assert store.schedules.next_fire("p", "tick") is None
    assert store.schedules.advance("p", "tick", None, 100.0, None) is True
    assert store.schedules.advance("p", "tick", None, 100.0, None) is False
    spec = JobSpec("p", "tick", b"", 0.0, source="schedule:tick")
    assert store.schedules.advance("p", "tick", 100.0, 130.0, spec) is True
    assert store.schedules.advance("p", "tick", 100.0, 130.0, spec) is False  # fired once
    assert store.schedules.next_fire("p", "tick") == 130.0
    fired = store.queue.list(plugin="p")
    assert [t.source for t in fired] == ["schedule:tick"]


def test_a_schedule_fired_alone_waits_for_its_previous_job_to_end(store: Storage) -> None:
    """``alone`` (a schedule's ``overlap: skip``): the fire advances the schedule but enqueues
    nothing while a job of that plugin from the same source is queued or running; a job from
    another source does not hold it back, and once the previous one ended the next fire runs."""
    store.jobs("p").enqueue("other", b"", 0.0, max_attempts=1, backoff_ms=10, max_queued=10,
                           source="schedule:other")
    assert store.schedules.advance("p", "tick", None, 100.0, None)
    spec = JobSpec("p", "tick", b"", 0.0, source="schedule:tick")
    assert store.schedules.advance("p", "tick", 100.0, 101.0, spec, alone=True)
    assert store.schedules.advance("p", "tick", 101.0, 102.0, spec, alone=True)  # queued
    ticks = [j for j in store.queue.list(plugin="p") if j.source == "schedule:tick"]
    assert len(ticks) == 1
    assert store.schedules.next_fire("p", "tick") == 102.0
    while (job := store.queue.claim("w", 1.0, 30.0)) is not None and job.handler != "tick":
        pass
    assert job is not None and job.id == ticks[0].id
    assert store.schedules.advance("p", "tick", 102.0, 103.0, spec, alone=True)  # running
    assert [j.id for j in store.queue.list(plugin="p") if j.source == "schedule:tick"] == \
        [job.id]
    assert store.queue.finish(job.id, "w", 2.0)
    assert store.schedules.advance("p", "tick", 103.0, 104.0, spec, alone=True)  # ended
    assert len([j for j in store.queue.list(plugin="p") if j.source == "schedule:tick"]) == 2
    # Without ``alone`` (``overlap: allow``) every fire enqueues.
    assert store.schedules.advance("p", "tick", 104.0, 105.0, spec)
    assert len([j for j in store.queue.list(plugin="p") if j.source == "schedule:tick"]) == 3


def _ticks(store: Storage) -> list[int]:
    return [j.id for j in store.queue.list(plugin="p") if j.source == "schedule:tick"]


def test_a_schedule_fired_alone_sees_retries_leases_dead_and_cancelled_jobs(
        store: Storage) -> None:
    """What holds ``alone`` back and what does not: a job waiting out a retry's backoff
    (queued, not yet due) and one whose host died holding it (running, lease expired, until a
    worker claims it again) do; a dead or a cancelled one does not."""
    spec = JobSpec("p", "tick", b"", 0.0, max_attempts=2, backoff_ms=10, source="schedule:tick")
    assert store.schedules.advance("p", "tick", None, 100.0, spec)
    job = store.queue.claim("w", 1.0, 30.0)
    assert job is not None and job.source == "schedule:tick"
    assert store.queue.fail(job.id, "w", 2.0, "boom", retry_at=1e9) == "queued"  # backoff
    assert store.schedules.advance("p", "tick", 100.0, 101.0, spec, alone=True)
    assert _ticks(store) == [job.id]
    # The retry runs on a host that dies: running, its lease long over, not yet claimed.
    assert not store.queue.retry(job.id, 3.0)  # not dead: nothing changes
    assert store.queue.claim("w", 1e9, 30.0) is not None
    assert store.schedules.advance("p", "tick", 101.0, 102.0, spec, alone=True)
    assert _ticks(store) == [job.id]
    assert store.queue.fail(job.id, "w", 1e9 + 1, "boom", retry_at=None) == "dead"
    assert store.schedules.advance("p", "tick", 102.0, 103.0, spec, alone=True)
    ticks = _ticks(store)
    assert len(ticks) == 2 and store.queue.cancel(ticks[0], 4.0)
    assert store.schedules.advance("p", "tick", 103.0, 104.0, spec, alone=True)
    assert len(_ticks(store)) == 3


def test_a_schedule_fired_alone_waits_for_the_run_now_the_operator_asked_for(
        store: Storage) -> None:
    """The console's (and API's) "run now" of a schedule queues its job with source
    ``schedule:<name>:now`` (console/jobs.py; the console counts it as the schedule's last
    run): while that job is queued or running, the schedule's own fire must not start a
    second run of the same handler beside it, what ``overlap: skip`` is for."""
    store.jobs("p").enqueue("tick", b"", 0.0, max_attempts=1, backoff_ms=10, max_queued=10,
                            source="schedule:tick:now")
    assert store.schedules.advance("p", "tick", None, 100.0, None)
    spec = JobSpec("p", "tick", b"", 0.0, source="schedule:tick")
    assert store.schedules.advance("p", "tick", 100.0, 101.0, spec, alone=True)
    assert _ticks(store) == []
    # Another schedule's run now does not hold this one back.
    other = JobSpec("p", "tick", b"", 0.0, source="schedule:ticker")
    assert store.schedules.advance("p", "ticker", None, 100.0, None)
    assert store.schedules.advance("p", "ticker", 100.0, 101.0, other, alone=True)
    assert [j.source for j in store.queue.list(plugin="p")] == ["schedule:ticker",
                                                                "schedule:tick:now"]


def test_event_log_keeps_recent_events(store: Storage) -> None:
    for i in range(200):
        store.events.append(f"plugin.p.n{i % 2}", "p", str(i).encode(), retain=64)
    recent = store.events.recent(5)
    assert [e.payload for e in recent] == [b"199", b"198", b"197", b"196", b"195"]
    assert all(e.topic.startswith("plugin.p.") for e in recent)
    assert len(store.events.recent(1000)) < 200  # trimmed
    assert [e.payload for e in store.events.recent(2, "plugin.p.n0")] == [b"198", b"196"]


def test_an_event_is_read_back_by_its_id_while_the_log_keeps_it(store: Storage) -> None:
    first = store.events.append("plugin.p.a", "p", b"\x00one", retain=64)
    second = store.events.append("plugin.p.b", None, b"two", retain=64)
    got = store.events.get(first)
    assert got is not None and (got.topic, got.plugin, got.payload) == ("plugin.p.a", "p",
                                                                        b"\x00one")
    other = store.events.get(second)
    assert other is not None and other.plugin is None
    assert store.events.get(second + 1000) is None


def test_events_are_read_back_in_bulk_in_order_skipping_trimmed_ones(store: Storage) -> None:
    ids = [store.events.append("plugin.p.x", "p", str(i).encode(), retain=3000)
           for i in range(2500)]  # more than one query's worth
    got = store.events.get_many([*reversed(ids), ids[-1] + 1000])
    assert [e.id for e in got] == ids and got[7].payload == b"7"
    assert store.events.get_many([]) == []


def test_jobs_release_others_makes_every_other_owners_job_due_at_once(store: Storage) -> None:
    """What a host that knows it is alone (the SQLite data dir's lock holder) does at start."""
    for handler in ("a", "b", "c"):
        store.queue.add(JobSpec("p", handler, b"", 0.0))
    now = time.time()
    dead = store.queue.claim("rt-dead", now, 3600)
    assert dead is not None
    assert store.queue.claim("rt-me", now, 3600) is not None
    assert store.queue.claim("rt-me", now, 3600) is not None
    assert store.queue.claim("rt-me", now, 3600) is None       # all leased for an hour
    assert store.queue.release_others("rt-me") == 1
    again = store.queue.claim("rt-me", time.time(), 3600)
    assert again is not None and again.id == dead.id
    assert again.attempts == 2                    # the dead host's delivery still counts
    assert store.queue.claim("rt-me", time.time(), 3600) is None   # mine kept their lease


def test_an_event_is_logged_with_its_jobs_and_a_replay_of_its_origin_writes_nothing(
        store: Storage) -> None:
    jobs = [KeyedJob(f"k:{{event}}:{h}", JobSpec("p", h, b"body", time.time()), f"d-{h}")
            for h in ("a", "b")]
    done = store.events.append_with_jobs("plugin.q.x", "q", b"data", 64, 2, jobs,
                                         origin="o:1")
    assert done.first and len(done.jobs) == 2
    assert [store.queue.get(j).handler for j in done.jobs] == ["a", "b"]  # type: ignore[union-attr]
    assert store.events.get(done.event_id).hops == 2  # type: ignore[union-attr]
    again = store.events.append_with_jobs("plugin.q.x", "q", b"data", 64, 2, jobs,
                                          origin="o:1", replay=True)
    assert again == Appended(done.event_id, (), False)
    assert len(store.queue.list(plugin="p")) == 2 and len(store.events.recent(9)) == 1
    # Each delivery's key names the new event: another host's keyed enqueue finds the job.
    found, _, made = store.queue.add_keyed(JobSpec("p", "a", b"body", time.time()),
                                           f"k:{done.event_id}:a", "d-a", time.time(), 3600)
    assert (found, made) == (done.jobs[0], False)
