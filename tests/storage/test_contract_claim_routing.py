"""A claim limited to the plugins a host has (issue 44 item 3), on every backend: a host never
leases a job of a plugin it does not serve, not a due one nor a dead host's, and its idle
wait is for its own plugins' next job only (another plugin's due backlog must not keep it
spinning)."""

from __future__ import annotations

import threading
import time

from omnicore.storage import JobSpec, Storage


def _add(storage: Storage, plugin: str, run_at: float) -> int:
    return storage.queue.add(JobSpec(plugin, "h", b"", run_at))


def test_a_claim_takes_only_the_plugins_named(storage: Storage) -> None:
    now = time.time()
    other = [_add(storage, "absent", now - 100 + i) for i in range(5)]  # older: first in line
    mine = _add(storage, "here", now)
    got = storage.queue.claim("w", now, 30, ["here", "also-here"])
    assert got is not None and got.id == mine and got.plugin == "here"
    assert storage.queue.claim("w", now, 30, ["here"]) is None
    assert storage.queue.claim("w", now, 30, []) is None  # a host serving nothing
    assert all(storage.queue.get(i).attempts == 0 for i in other)  # type: ignore[union-attr]
    # Unlimited (an app without a plugin host): as before, the oldest due.
    anyone = storage.queue.claim("w", now, 30)
    assert anyone is not None and anyone.id == other[0]


def test_a_dead_hosts_job_goes_only_to_a_host_with_its_plugin(storage: Storage) -> None:
    now = time.time()
    lost = _add(storage, "rare", now - 10)
    assert storage.queue.claim("dead-host", now, 0.5, ["rare"]) is not None
    assert storage.queue.claim("w", now + 1, 30, ["common"]) is None  # expired, not ours
    again = storage.queue.claim("w2", now + 1, 30, ["rare", "common"])
    assert again is not None and again.id == lost and again.attempts == 2


def test_next_due_is_the_named_plugins(storage: Storage) -> None:
    now = time.time()
    _add(storage, "absent", now - 50)
    later = now + 600
    _add(storage, "here", later)
    assert storage.queue.next_due() == now - 50
    assert storage.queue.next_due(["here"]) == later
    assert storage.queue.next_due(["nothing"]) is None
    assert storage.queue.next_due([]) is None


def test_hosts_with_different_plugins_split_a_queue_by_plugin(storage: Storage) -> None:
    """Three claimers with different plugins drain one mixed queue at once: every job is
    delivered once, by a claimer that has its plugin."""
    now = time.time()
    plugins = {"a": ["p1"], "b": ["p1", "p2"], "c": ["p3"]}
    ids = [_add(storage, f"p{1 + i % 3}", now) for i in range(60)]
    taken: dict[str, list[tuple[int, str]]] = {k: [] for k in plugins}

    def drain(host: str) -> None:
        while (job := storage.queue.claim(host, time.time(), 30, plugins[host])) is not None:
            taken[host].append((job.id, job.plugin))
            storage.queue.finish(job.id, host, time.time())

    threads = [threading.Thread(target=drain, args=(h,)) for h in plugins]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    seen = sorted(i for got in taken.values() for i, _ in got)
    assert seen == sorted(ids)  # each once
    for host, got in taken.items():
        assert {p for _, p in got} <= set(plugins[host]), host
    assert all(storage.queue.get(i).attempts == 1 for i in ids)  # type: ignore[union-attr]


def test_a_host_serving_many_plugins_claims_by_one_filtered_probe(storage: Storage) -> None:
    from omnicore.storage.stores.leases import MAX_PROBES

    now = time.time()
    _add(storage, "absent", now - 10)
    mine = _add(storage, "p-7", now - 5)
    many = [f"p-{i}" for i in range(MAX_PROBES + 10)]
    assert storage.queue.next_due(many) == now - 5
    got = storage.queue.claim("w", now, 30, many)
    assert got is not None and got.id == mine
    assert storage.queue.claim("w", now, 30, many) is None


def test_a_job_naming_a_version_goes_only_to_a_host_serving_it(storage: Storage) -> None:
    from omnicore.storage.stores.leases import MAX_PROBES

    now = time.time()
    v1, v2 = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    wants_v2 = storage.queue.add(JobSpec("tool", "h", b"", now - 50, digest=v2))
    wants_v1 = storage.queue.add(JobSpec("tool", "h", b"", now - 40, digest=v1))
    any_version = _add(storage, "tool", now - 30)
    on_v1 = {"tool": v1, "other": None}
    assert storage.queue.next_due(on_v1) == now - 40  # v2's older job is not ours
    got = storage.queue.claim("a", now, 30, on_v1)
    assert got is not None and got.id == wants_v1 and got.digest == v1
    got = storage.queue.claim("a", now, 30, on_v1)
    assert got is not None and got.id == any_version
    assert storage.queue.claim("a", now, 30, on_v1) is None
    assert storage.queue.claim("a", now, 30, {"tool": None}) is None  # version unknown here
    assert storage.queue.get(wants_v2).attempts == 0  # type: ignore[union-attr]
    # Past MAX_PROBES names the one filtered probe holds to the versions too.
    many = {f"p{i}": None for i in range(MAX_PROBES + 1)}
    assert storage.queue.claim("b", now, 30, {**many, "tool": v1}) is None
    assert storage.queue.next_due({**many, "tool": v1}) is None
    got = storage.queue.claim("b", now, 30, {**many, "tool": v2})
    assert got is not None and got.id == wants_v2
    # A lease that ran out goes back only to a host serving its version.
    taken = []
    while (job := storage.queue.claim("c", now + 31, 30, {"tool": v1})) is not None:
        taken.append(job.id)
    assert sorted(taken) == sorted([wants_v1, any_version])  # theirs ran out too
    again = storage.queue.claim("c", now + 31, 30, {"tool": v2})
    assert again is not None and again.id == wants_v2 and again.attempts == 2
