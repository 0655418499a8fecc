"""The vector rows contract (omnicore.storage.vector_rows): every backend must pass these.

The change sequence is what lets every host's index cache catch up (specs/host.md): a cache
built at generation G that applies ``changed(G)`` and ``deleted(G)`` equals the rows.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from omnicore.storage import QuotaExceeded, Storage
from omnicore.storage.vector_rows import BadVector, VectorQuota, VectorRows

QUOTA = VectorQuota()

pytestmark = pytest.mark.store("vectors")


def _vec(*values: float) -> bytes:
    return np.asarray(values, dtype="<f4").tobytes()


def _coll(rows: VectorRows, plugin: str = "p", name: str = "c", dim: int = 2) -> int:
    rows.create(plugin, name, dim, "cosine", 16, 1.0)
    found = rows.collection(plugin, name)
    assert found is not None
    return found.id


def _put(rows: VectorRows, coll: int, vid: str, *values: float, meta: str | None = None,
         plugin: str = "p", quota: VectorQuota = QUOTA) -> tuple[int, int]:
    return rows.upsert(coll, plugin, vid, _vec(*values), meta, 8 + len(vid), quota)


def test_create_is_idempotent_per_dimension_and_counts_against_the_quota(
        storage: Storage) -> None:
    rows = storage.vectors
    rows.create("p", "c", 3, "l2", 2, 1.0)
    rows.create("p", "c", 3, "l2", 2, 2.0)  # exists with that dimension: nothing to do
    with pytest.raises(BadVector):
        rows.create("p", "c", 4, "l2", 2, 3.0)
    rows.create("p", "d", 3, "cosine", 2, 4.0)
    with pytest.raises(QuotaExceeded):
        rows.create("p", "e", 3, "cosine", 2, 5.0)
    rows.create("q", "e", 3, "cosine", 2, 5.0)  # another plugin's collections are its own
    found = rows.collection("p", "c")
    assert found is not None and (found.dim, found.metric, found.created_at) == (3, "l2", 1.0)
    assert [c.name for c in rows.collections("p")] == ["c", "d"]
    assert rows.collection("q", "c") is None
    assert rows.plugins() == ["p", "q"]


def test_upsert_keeps_a_label_per_id_and_never_reuses_one(storage: Storage) -> None:
    rows = storage.vectors
    coll = _coll(rows)
    a, gen_a = _put(rows, coll, "a", 1, 0)
    b, gen_b = _put(rows, coll, "b", 0, 1)
    assert a != b and gen_b > gen_a
    again, gen = _put(rows, coll, "a", 1, 1, meta='{"k":1}')
    assert again == a and gen > gen_b
    assert sorted(rows.entries(coll)) == [(a, "a", '{"k":1}'), (b, "b", None)]
    removed = rows.delete(coll, "a")
    assert removed is not None and removed[0] == a and removed[1] > gen
    assert rows.delete(coll, "a") is None
    reborn, _ = _put(rows, coll, "a", 1, 0)
    assert reborn not in (a, b)  # a cache keyed by label never confuses old and new
    found = rows.collection_by_id(coll)
    assert found is not None and found.count == 2 and found.generation == removed[1] + 1


def test_quotas_refuse_with_nothing_written(storage: Storage) -> None:
    rows = storage.vectors
    coll = _coll(rows)
    other = _coll(rows, name="other")
    small = VectorQuota(max_vectors=2, max_bytes=10_000)
    _put(rows, coll, "a", 1, 0, quota=small)
    _put(rows, other, "b", 1, 0, quota=small)  # the quota is per plugin, across collections
    before = rows.collection_by_id(coll)
    with pytest.raises(QuotaExceeded):
        _put(rows, coll, "c", 1, 0, quota=small)
    _put(rows, coll, "a", 0, 1, quota=small)  # replacing is not a new vector
    tight = VectorQuota(max_bytes=20)
    with pytest.raises(QuotaExceeded):
        rows.upsert(coll, "p", "a", _vec(1, 1), "x" * 100, 200, tight)
    after = rows.collection_by_id(coll)
    assert before is not None and after is not None
    assert after.count == 1 and after.generation == before.generation + 1
    assert [e[1] for e in rows.entries(coll)] == ["a"]


def test_a_cache_catches_up_from_the_change_sequence(storage: Storage) -> None:
    rows = storage.vectors
    coll = _coll(rows)
    for i in range(12):
        _put(rows, coll, f"v{i}", i, 1)
    start = rows.collection_by_id(coll)
    assert start is not None
    cache = {label: vec for label, vec in rows.changed(coll, -1)}
    # Then another host changes things.
    _put(rows, coll, "v1", 100, 100)     # replaced: same label, new vector
    rows.delete(coll, "v2")
    _put(rows, coll, "v2", 7, 7)          # deleted then added again: a new label
    _put(rows, coll, "new", 3, 3)
    rows.delete(coll, "v3")
    last, page = -1, rows.changed(coll, start.generation, -1, limit=2)
    while page:  # paged by label
        cache.update(page)
        last = page[-1][0]
        page = rows.changed(coll, start.generation, last, limit=2)
    gone = rows.deleted(coll, start.generation)
    assert gone is not None and len(gone) == 2
    for label in gone:
        cache.pop(label, None)
    truth = dict(rows.changed(coll, -1))
    assert cache == truth
    assert {lb for lb, _, _ in rows.entries(coll)} == set(truth)
    assert rows.deleted(coll, -1) is None  # from the very start: rebuild from the rows


def test_the_sequence_is_strictly_increasing_under_concurrent_writers(storage: Storage) -> None:
    rows = storage.vectors
    coll = _coll(rows)
    gens: list[int] = []
    labels: list[int] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        for i in range(25):
            label, gen = _put(rows, coll, f"w{w}-{i}", w, i)
            with lock:
                gens.append(gen)
                labels.append(label)
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(gens)) == 100 and len(set(labels)) == 100
    found = rows.collection_by_id(coll)
    assert found is not None and found.generation == max(gens) and found.count == 100


def test_matching_filters_by_metadata_within_one_collection(storage: Storage) -> None:
    rows = storage.vectors
    coll = _coll(rows)
    other = _coll(rows, name="other")
    red, _ = _put(rows, coll, "r", 1, 0, meta='{"color":"red","n":1,"ok":1}')
    _put(rows, coll, "b", 0, 1, meta='{"color":"blue","n":2}')
    _put(rows, coll, "none", 1, 1)
    _put(rows, other, "r2", 1, 0, meta='{"color":"red"}')
    assert rows.matching(coll, [("color", "red")], None) == [red]
    assert rows.matching(coll, [("color", "red"), ("n", 1), ("ok", 1)], 10) == [red]
    assert rows.matching(coll, [("color", "red"), ("n", 2)], None) == []
    assert len(rows.matching(coll, [], 2)) == 2


def test_drop_removes_the_collection_its_rows_and_its_deletes(storage: Storage) -> None:
    rows = storage.vectors
    coll = _coll(rows)
    _put(rows, coll, "a", 1, 0)
    _put(rows, coll, "b", 1, 0)
    rows.delete(coll, "b")
    assert rows.drop(coll) is True
    assert rows.drop(coll) is False
    assert rows.collection("p", "c") is None and rows.collection_by_id(coll) is None
    assert rows.entries(coll) == [] and rows.changed(coll, -1) == []
    assert rows.plugins() == []
