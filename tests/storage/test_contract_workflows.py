"""The workflow store contract (omnicore.storage.workflows): every backend must pass these.

A step row is a durable job leased to an owner; runs, their steps, child runs and the cron
triggers that start them change together in one transaction.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from omnicore.storage import Storage
from omnicore.storage.workflows import NewStep, WorkflowStore

pytestmark = pytest.mark.store("workflows")


def _run(store: WorkflowStore, workflow: str = "wf", trigger: object = None,
         key: str | None = None, limit: int = 0,
         parent: tuple[int, str, int] | None = None) -> int:
    made = store.create_run(workflow, "v1", {"x": 1}, trigger, "test", key=key, limit=limit,
                            parent=parent)
    assert made is not None
    return made[0]


def _queued(store: WorkflowStore, run_id: int, *names: str, at: float = 0.0) -> None:
    store.add_steps(run_id, [NewStep(n, -1, "queued", input={"n": n}, run_at=at or time.time())
                             for n in names])


def test_versions_and_runs_round_trip(storage: Storage) -> None:
    store = storage.workflows
    store.save_version("d1", "wf", "name: wf")
    store.save_version("d1", "wf", "changed")  # a version is written once
    assert store.version("d1") == "name: wf" and store.version("nope") is None
    rid = _run(store, trigger={"cron": "* * * * *"})
    run = store.run(rid)
    assert run is not None and run.state == "running" and run.inputs == {"x": 1}
    assert run.trigger == {"cron": "* * * * *"} and run.started_by == "test"
    other = _run(store, "other")
    assert [r.id for r in store.runs()] == [other, rid]  # newest first
    assert [r.id for r in store.runs(workflow="wf")] == [rid]
    assert store.count_runs(states=("running",)) == 2
    assert store.finish_run(rid, "succeeded", outputs={"y": 2}) is True
    assert store.finish_run(rid, "failed", error="late") is False  # it had ended
    done = store.run(rid)
    assert done is not None and done.state == "succeeded" and done.outputs == {"y": 2}
    kinds = [h.kind for h in store.history(rid)]
    assert kinds == ["run.created", "run.succeeded"]


def test_concurrency_keys_queue_skip_or_cancel_in_one_decision(storage: Storage) -> None:
    store = storage.workflows
    first = _run(store, key="k", limit=1)
    queued = store.create_run("wf", "v1", {}, None, "t", key="k", limit=1, on_conflict="queue")
    skipped = store.create_run("wf", "v1", {}, None, "t", key="k", limit=1, on_conflict="skip")
    other_key = store.create_run("wf", "v1", {}, None, "t", key="j", limit=1)
    assert queued is not None and queued[1] == "queued"
    assert skipped is not None and skipped[1] == "skipped"
    assert other_key is not None and other_key[1] == "running"
    assert store.promote("wf", "k", 1) == []  # the first still runs
    store.finish_run(first, "succeeded")
    assert store.promote("wf", "k", 1) == [queued[0]]
    newest = store.create_run("wf", "v1", {}, None, "t", key="k", limit=1,
                              on_conflict="cancel_running")
    assert newest is not None and newest[1] == "running" and newest[2] == [queued[0]]
    assert store.run(queued[0]).state == "cancelled"  # type: ignore[union-attr]


def test_a_trigger_fires_once_across_hosts(storage: Storage) -> None:
    store = storage.workflows
    assert store.next_fire("wf", "cron") is None
    assert store.set_fire("wf", "cron", None, 100.0) is True
    assert store.set_fire("wf", "cron", None, 100.0) is False
    won = store.create_run("wf", "v1", {}, None, "cron", fire=("cron", 100.0, 160.0))
    lost = store.create_run("wf", "v1", {}, None, "cron", fire=("cron", 100.0, 160.0))
    assert won is not None and lost is None
    assert store.next_fire("wf", "cron") == 160.0
    assert store.count_runs(workflow="wf") == 1  # the loser created nothing


def test_steps_are_leased_to_an_owner(storage: Storage) -> None:
    store = storage.workflows
    rid = _run(store)
    now = time.time()
    _queued(store, rid, "a", at=now - 2)
    _queued(store, rid, "later", at=now + 3600)
    assert store.add_steps(rid, [NewStep("a", -1, "queued")]) == 0  # exists: left alone
    step = store.claim("w1", now, 30)
    assert step is not None and (step.step, step.attempt, step.owner) == ("a", 1, "w1")
    assert step.input == {"n": "a"}
    assert store.claim("w2", now, 30) is None  # the other is not due
    assert store.complete(rid, "a", -1, owner="w2", state="succeeded", output=b"1") is False
    store.renew("w2", [(rid, "a", -1)], now + 10**6)  # not w2's lease: no effect
    assert store.claim("w2", now + 31, 30) is not None  # w1's lease ran out: delivered again
    assert store.complete(rid, "a", -1, owner="w1", state="succeeded", output=b"1") is False
    assert store.complete(rid, "a", -1, owner="w2", state="succeeded",
                          output=b'{"ok":true}') is True
    done = store.step(rid, "a")
    assert done is not None and done.state == "succeeded" and done.attempt == 2
    assert done.output == {"ok": True} and done.owner is None
    assert store.next_due() is not None


def test_renew_keeps_and_release_gives_back_without_an_attempt(storage: Storage) -> None:
    store = storage.workflows
    rid = _run(store)
    now = time.time()
    _queued(store, rid, "a", at=now - 1)
    store.claim("w1", now, 5)
    store.renew("w1", [(rid, "a", -1)], now + 600)
    assert store.claim("w2", now + 60, 5) is None  # renewed: still w1's
    store.release("w2", [(rid, "a", -1)])  # not w2's to give back
    assert store.step(rid, "a").state == "running"  # type: ignore[union-attr]
    store.release("w1", [(rid, "a", -1)])
    back = store.step(rid, "a")
    assert back is not None and back.state == "queued" and back.attempt == 0


def test_release_others_makes_every_other_owners_step_due_at_once(storage: Storage) -> None:
    """What a host that knows it is alone (the SQLite data dir's lock holder) does at start."""
    store = storage.workflows
    rid = _run(store)
    _queued(store, rid, "one", "two", at=time.time() - 1)
    dead = store.claim("rt-dead", time.time(), 3600)
    mine = store.claim("rt-me", time.time(), 3600)
    assert dead is not None and mine is not None
    assert store.claim("rt-me", time.time(), 3600) is None     # both leased for an hour
    assert store.release_others("rt-me") == 1
    again = store.claim("rt-me", time.time(), 3600)
    assert again is not None and (again.step, again.attempt) == (dead.step, 2)
    assert store.claim("rt-me", time.time(), 3600) is None     # mine kept its lease



def test_release_others_leaves_a_for_each_step_row_alone(storage: Storage) -> None:
    # A for_each's own row is `running` with no owner while its items run: no one leased it,
    # so no release may make it claimable (a worker would run the step itself as an item).
    store = storage.workflows
    rid = _run(store)
    store.add_steps(rid, [NewStep("each", -1, "running", wait={"items": 1}),
                          NewStep("each", 0, "queued", input=0)])
    item = store.claim("rt-dead", time.time(), 3600)
    assert item is not None and item.index == 0
    assert store.release_others("rt-me") == 1
    again = store.claim("rt-me", time.time(), 3600)
    assert again is not None and (again.step, again.index) == ("each", 0)
    assert store.claim("rt-me", time.time(), 3600) is None
    parent = store.step(rid, "each")
    assert parent is not None and parent.state == "running" and parent.owner is None


def test_concurrent_claims_never_share_a_step(storage: Storage) -> None:
    store = storage.workflows
    rid = _run(store)
    names = [f"s{i}" for i in range(40)]
    _queued(store, rid, *names, at=time.time() - 1)
    got: list[str] = []
    lock = threading.Lock()

    def worker(owner: str) -> None:
        while (step := store.claim(owner, time.time(), 30)) is not None:
            with lock:
                got.append(step.step)
    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(got) == sorted(names)


def test_large_outputs_are_blobs_and_for_each_items_are_promoted(storage: Storage) -> None:
    store = storage.workflows
    rid = _run(store)
    big = json.dumps({"data": "x" * 5000}).encode()
    store.add_steps(rid, [NewStep("each", -1, "running")] +
                    [NewStep("each", i, "pending", input=i) for i in range(5)])
    assert store.promote_items(rid, "each", 2) == 2
    assert store.counts(rid, "each") == {"queued": 2, "pending": 3}
    assert store.promote_items(rid, "each", 2) == 0
    item = store.claim("w", time.time() + 1, 30)
    assert item is not None and item.index == 0
    assert store.complete(rid, "each", 0, owner="w", state="succeeded", output=big,
                          inline_limit=100) is True
    done = store.step(rid, "each", 0)
    assert done is not None and done.output_ref is not None and done.output_bytes == len(big)
    assert done.output == {"data": "x" * 5000}
    assert store.blob(done.output_ref) == big
    assert store.outputs(rid, "each")[0] == {"data": "x" * 5000}
    assert len(store.steps(rid)) == 6 and len(store.steps(rid, parents=True)) == 1
    # Without outputs nothing of them is read, the blob of one stored by reference included.
    light = [r for r in store.steps(rid, outputs=False) if r.index == 0]
    assert light[0].output is None and light[0].output_ref == done.output_ref


def test_cancel_reaches_steps_and_child_runs_and_restart_keeps_successes(
        storage: Storage) -> None:
    store = storage.workflows
    parent = _run(store)
    child = _run(store, "child", parent=(parent, "call", -1))
    now = time.time()
    _queued(store, parent, "ok", "todo", at=now - 1)
    step = store.claim("w", now, 30)
    assert step is not None
    store.complete(parent, step.step, -1, owner="w", state="succeeded", output=b"1")
    store.add_steps(parent, [NewStep("wait", -1, "waiting", wait={"approval": True})])
    assert [s.step for s in store.waiting()] == ["wait"]
    assert store.cancel_run(parent, "ops", "stop") is True
    assert store.cancel_run(parent, "ops") is False
    assert store.cancel_run(10**9, "ops") is None
    assert store.run(child).state == "cancelled"  # type: ignore[union-attr]
    states = {s.step: s.state for s in store.steps(parent)}
    assert states[step.step] == "succeeded" and set(states.values()) == {"succeeded",
                                                                         "cancelled"}
    assert store.restart(parent, "ops", "v2") is True
    again = store.run(parent)
    assert again is not None and again.state == "running" and again.restarts == 1
    assert again.version == "v2"
    assert [s.step for s in store.steps(parent)] == [step.step]  # the success is kept
    store.note(parent, "custom", actor="ops", data={"why": "test"})
    assert store.history(parent)[-1].data == {"why": "test"}
    assert store.restart(parent, "ops", None) is False  # running: not ended


def test_a_webhook_signature_is_accepted_once_within_its_window(storage: Storage) -> None:
    store = storage.workflows
    now = time.time()
    assert store.first_delivery("sig-a", now - 1000, 300)
    assert store.first_delivery("sig-b", now, 300)       # forgets what is older than 300 s
    assert not store.first_delivery("sig-b", now + 1, 300)
    assert store.first_delivery("sig-a", now + 2, 300)


def test_a_child_run_is_found_by_its_parent_step_key(storage: Storage) -> None:
    store = storage.workflows
    parent = _run(store)
    first = _run(store, "child", parent=(parent, "call", -1))
    item = _run(store, "child", parent=(parent, "call", 2))
    other = _run(store, "other")
    # Siblings of the key: another index, another step, another parent find nothing of it.
    found = store.child_run((parent, "call", -1))
    assert found is not None and found.id == first
    found = store.child_run((parent, "call", 2))
    assert found is not None and found.id == item
    assert store.child_run((parent, "call", 1)) is None
    assert store.child_run((parent, "other", -1)) is None
    assert store.child_run((other, "call", -1)) is None
