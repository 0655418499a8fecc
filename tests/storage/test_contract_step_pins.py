"""A workflow step row that calls a plugin (``plugin``) is claimed only by a host serving that
plugin, and one that pins a version too (``pin`` = ``name@sha256:<hex>``) only by a host
serving that name at that version, on every backend: a due row, a dead host's row and the
idle wait's next-due time alike; a row naming no plugin (an approval, an HTTP request) goes to
any host."""

from __future__ import annotations

import time

import pytest

from omnicore.storage import Storage
from omnicore.storage.stores.leases import MAX_PROBES
from omnicore.storage.workflows import NewStep, WorkflowStore

pytestmark = pytest.mark.store("workflows")

A, B = "sha256:" + "a" * 64, "sha256:" + "b" * 64


def _run(store: WorkflowStore) -> int:
    made = store.create_run("wf", "v1", {}, None, "test")
    assert made is not None
    return made[0]


def test_a_pinned_step_is_claimed_only_where_its_version_serves(storage: Storage) -> None:
    store = storage.workflows
    now = time.time()
    run = _run(store)
    store.add_steps(run, [NewStep("on_b", -1, "queued", run_at=now - 30, pin=f"tool@{B}"),
                          NewStep("on_a", -1, "queued", run_at=now - 20, pin=f"tool@{A}"),
                          NewStep("free", -1, "queued", run_at=now - 10)])
    # A host serving nothing pinned: only the unpinned row.
    got = store.claim("w0", now, 30, {})
    assert got is not None and got.step == "free" and got.pin is None
    assert store.claim("w0", now, 30, {"other": A}) is None  # the pair, not the digest
    got = store.claim("w1", now, 30, {"tool": A, "other": B})
    assert got is not None and got.step == "on_a" and got.pin == f"tool@{A}"
    assert store.claim("w1", now, 30, {"tool": A}) is None
    assert store.claim("w1", now, 30, {"tool": None}) is None  # serving, digest unknown
    step = store.step(run, "on_b")
    assert step is not None and step.state == "queued" and step.attempt == 0
    # Unlimited (an app without a plugin host): any row, as before.
    got = store.claim("w2", now, 30)
    assert got is not None and got.step == "on_b"


def test_a_dead_hosts_pinned_step_goes_only_to_a_host_serving_its_version(
        storage: Storage) -> None:
    store = storage.workflows
    now = time.time()
    run = _run(store)
    store.add_steps(run, [NewStep("s", -1, "queued", run_at=now - 5, pin=f"tool@{B}")])
    assert store.claim("dead-host", now, 0.5, {"tool": B}) is not None
    assert store.claim("w", now + 1, 30, {"tool": A}) is None  # expired, not its version
    again = store.claim("w2", now + 1, 30, {"tool": B})
    assert again is not None and again.step == "s" and again.attempt == 2


def test_next_due_counts_only_the_steps_a_host_may_claim(storage: Storage) -> None:
    store = storage.workflows
    now = time.time()
    run = _run(store)
    later = now + 600
    store.add_steps(run, [NewStep("pinned", -1, "queued", run_at=now - 50, pin=f"tool@{B}"),
                          NewStep("free", -1, "queued", run_at=later)])
    assert store.next_due() == pytest.approx(now - 50)
    assert store.next_due({"tool": B}) == pytest.approx(now - 50)
    assert store.next_due({"tool": A}) == pytest.approx(later)
    assert store.next_due({}) == pytest.approx(later)


@pytest.mark.parametrize("others", [0, MAX_PROBES + 1], ids=["probe-per-plugin", "one-scan"])
def test_a_plugin_step_is_claimed_only_where_its_plugin_serves(storage: Storage,
                                                                others: int) -> None:
    store = storage.workflows
    now = time.time()
    run = _run(store)
    store.add_steps(run, [
        NewStep("pinned", -1, "queued", run_at=now - 40, pin=f"tool@{A}", plugin="tool"),
        NewStep("tool", -1, "queued", run_at=now - 30, plugin="tool"),
        NewStep("other", -1, "queued", run_at=now - 20, plugin="other"),
        NewStep("approval", -1, "queued", run_at=now - 10)])
    # Past MAX_PROBES names the claim filters one scan instead of seeking per name.
    extra = {f"p{i}": B for i in range(others)}
    # A host serving no plugin: only the row naming none.
    got = store.claim("w0", now, 30, dict(extra))
    assert got is not None and got.step == "approval" and got.plugin is None
    assert store.claim("w0", now, 30, dict(extra)) is None
    got = store.claim("w1", now, 30, {**extra, "other": None})
    assert got is not None and (got.step, got.plugin, got.attempt) == ("other", "other", 1)
    # Serving tool at another version: the unpinned tool row, never the pinned one.
    got = store.claim("w2", now, 30, {**extra, "tool": B})
    assert got is not None and (got.step, got.plugin) == ("tool", "tool")
    assert store.claim("w2", now, 30, {**extra, "tool": B}) is None
    got = store.claim("w3", now, 30, {**extra, "tool": A})
    assert got is not None and (got.step, got.pin) == ("pinned", f"tool@{A}")
    assert [s.attempt for s in store.steps(run)] == [1, 1, 1, 1]


def test_a_dead_hosts_plugin_step_goes_only_to_a_host_serving_its_plugin(
        storage: Storage) -> None:
    store = storage.workflows
    now = time.time()
    run = _run(store)
    store.add_steps(run, [NewStep("s", -1, "queued", run_at=now - 5, plugin="tool")])
    assert store.claim("dead-host", now, 0.5, {"tool": None}) is not None
    assert store.claim("w", now + 1, 30, {"other": None}) is None  # expired, plugin lacking
    assert store.claim("w", now + 1, 30, {}) is None
    again = store.claim("w2", now + 1, 30, {"tool": A})
    assert again is not None and again.step == "s" and again.attempt == 2


def test_next_due_counts_only_the_plugin_steps_a_host_serves(storage: Storage) -> None:
    store = storage.workflows
    now = time.time()
    run = _run(store)
    later = now + 600
    store.add_steps(run, [NewStep("tool", -1, "queued", run_at=now - 50, plugin="tool"),
                          NewStep("approval", -1, "queued", run_at=later)])
    assert store.next_due() == pytest.approx(now - 50)
    assert store.next_due({"tool": None}) == pytest.approx(now - 50)
    assert store.next_due({"other": A}) == pytest.approx(later)
    assert store.next_due({}) == pytest.approx(later)
