"""The memory rows contract (omnicore.storage.memory_rows): every backend must pass these."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import pytest

from omnicore.storage import QuotaExceeded, Storage
from omnicore.storage.memory_rows import Filter, MemoryRows, NewMemory, query_words

pytestmark = pytest.mark.store("memory")


def _add(rows: MemoryRows, plugin: str, text: str, *, tier: int = 2, cap: int = 100,
         importance: float = 0.5, meta: dict[str, object] | None = None,
         expires_at: float | None = None, now: float | None = None,
         vector: bool = False) -> int:
    item = NewMemory(plugin, tier, text, None if meta is None else json.dumps(meta),
                     importance, time.time() if now is None else now, expires_at, vector)
    return rows.insert(item, cap)[0]


def _search(rows: MemoryRows, plugin: str, query: str, tiers: Sequence[int] = (0, 1, 2),
            flt: Filter = ()) -> list[int]:
    found = rows.search(plugin, query_words(query), tiers, time.time(), flt, 50)
    return [row.id for row, _ in found]


def test_ids_are_random_53_bit_and_rows_round_trip(storage: Storage) -> None:
    rows = storage.memory
    ids = [_add(rows, "a", f"note {i}", meta={"i": i}) for i in range(20)]
    assert len(set(ids)) == 20
    assert all(0 < i < 2**53 for i in ids)
    assert max(ids) - min(ids) > 10**6  # not a counter another plugin could read off its ids
    got = {r.id: r for r in rows.by_ids("a", ids[:3], (0, 1, 2), time.time(), [])}
    assert {json.loads(r.meta or "{}")["i"] for r in got.values()} == {0, 1, 2}
    assert rows.count("a") == {2: 20}


def test_every_read_and_write_is_scoped_to_its_plugin(storage: Storage) -> None:
    rows = storage.memory
    mine = _add(rows, "a", "the launch code is swordfish")
    _add(rows, "b", "b's own note")
    now = time.time()
    assert _search(rows, "b", "swordfish launch code") == []
    assert rows.by_ids("b", [mine], (0, 1, 2), now, []) == []
    assert [r.text for r in rows.top("b", (0, 1, 2), now, [], 10)] == ["b's own note"]
    assert rows.delete("b", mine) is None
    rows.touch("b", [mine], now)
    assert rows.count("b") == {2: 1}
    assert _search(rows, "a", "swordfish") == [mine]


def test_search_cannot_reach_another_plugins_rows_through_the_query_syntax(
        storage: Storage) -> None:
    rows = storage.memory
    _add(rows, "a", "alpha secret")
    # Words that mean something to a full-text engine, and quotes, stay plain words.
    for query in ('secret OR alpha', '"alpha" NEAR secret', "scope : a", "* secret*",
                  "alpha) OR (secret", "text : alpha"):
        assert _search(rows, "b", query) == [], query
    assert _search(rows, "b", "") == []


def test_search_ranks_matches_and_keeps_live_rows_of_the_tiers_and_filter(
        storage: Storage) -> None:
    rows = storage.memory
    now = time.time()
    both = _add(rows, "p", "rust wasm plugins compile fast", meta={"lang": "rust", "n": 1})
    one = _add(rows, "p", "go plugins need a reactor", meta={"lang": "go", "n": 2})
    gone = _add(rows, "p", "expired plugins note", tier=0, expires_at=now - 1)
    working = _add(rows, "p", "working plugins note", tier=0, expires_at=now + 3600)
    found = rows.search("p", query_words("rust plugins"), (0, 1, 2), now, [], 10)
    ids = [row.id for row, _ in found]
    assert ids[0] == both and gone not in ids and {one, working} <= set(ids)
    assert all(rel >= 0 for _, rel in found)
    assert found[0][1] > dict((r.id, rel) for r, rel in found)[one]
    assert _search(rows, "p", "plugins", tiers=(0,)) == [working]
    assert _search(rows, "p", "plugins", flt=[("lang", "go")]) == [one]
    assert _search(rows, "p", "plugins", flt=[("n", 1)]) == [both]
    assert _search(rows, "p", "nothing-like-it") == []


def test_top_is_most_important_then_newest_and_skips_expired(storage: Storage) -> None:
    rows = storage.memory
    now = time.time()
    low = _add(rows, "p", "low", importance=0.1, now=now - 10)
    high_old = _add(rows, "p", "high old", importance=0.9, now=now - 10)
    high_new = _add(rows, "p", "high new", importance=0.9, now=now)
    _add(rows, "p", "gone", importance=1.0, tier=0, expires_at=now - 1)
    assert [r.id for r in rows.top("p", (0, 1, 2), now, [], 10)] == [high_new, high_old, low]
    assert [r.id for r in rows.top("p", (0, 1, 2), now, [], 1)] == [high_new]


def test_a_full_tier_evicts_its_least_important_in_the_same_insert(storage: Storage) -> None:
    rows = storage.memory
    now = time.time()
    keep = _add(rows, "p", "keep", tier=1, cap=2, importance=0.9, now=now)
    drop = _add(rows, "p", "drop", tier=1, cap=2, importance=0.1, now=now, vector=True)
    other_tier = _add(rows, "p", "other tier", tier=2, cap=2, importance=0.0)
    new, evicted = rows.insert(NewMemory("p", 1, "new", None, 0.5, now, None, False), 2)
    assert evicted == [drop]  # it had a vector: the caller drops that too
    ids = {r.id for r in rows.top("p", (0, 1, 2), time.time(), [], 10)}
    assert ids == {keep, new, other_tier}
    # Another plugin's full tier is its own business.
    _add(rows, "q", "q1", tier=1, cap=1)
    assert rows.insert(NewMemory("q", 1, "q2", None, 0.5, now, None, False), 1)[1] == []
    assert rows.count("p") == {1: 2, 2: 1} and rows.count("q") == {1: 1}


def test_a_tier_with_cap_zero_refuses(storage: Storage) -> None:
    with pytest.raises(QuotaExceeded):
        storage.memory.insert(NewMemory("p", 0, "x", None, 0.5, time.time(), None, False), 0)
    assert storage.memory.count("p") == {}


def test_delete_says_whether_the_row_had_a_vector(storage: Storage) -> None:
    rows = storage.memory
    plain = _add(rows, "p", "plain")
    with_vector = _add(rows, "p", "vector", vector=True)
    assert rows.delete("p", plain) is False
    assert rows.delete("p", with_vector) is True
    assert rows.delete("p", with_vector) is None


def test_consolidate_expires_promotes_and_decays(storage: Storage) -> None:
    rows = storage.memory
    now = time.time()
    _add(rows, "p", "expired plain", tier=0, expires_at=now - 1)
    expired_vec = _add(rows, "q", "expired vector", tier=0, expires_at=now - 1, vector=True)
    recalled = _add(rows, "p", "recalled often", tier=1, expires_at=now + 3600)
    idle = _add(rows, "p", "idle", tier=2, importance=0.8, now=now - 100)
    fresh = _add(rows, "p", "fresh", tier=2, importance=0.8, now=now)
    for _ in range(3):
        rows.touch("p", [recalled], now)
    done = rows.consolidate(now, since=now - 50, promote_after=3, decay=0.5)
    assert (done.expired, done.promoted) == (2, 1)
    assert done.dropped == [("q", expired_vec)]
    by_id = {r.id: r for r in rows.top("p", (0, 1, 2), now + 10**6, [], 10)}
    assert by_id[recalled].tier == 2  # promoted, and no longer expires
    assert by_id[idle].importance == pytest.approx(0.4)
    assert by_id[fresh].importance == pytest.approx(0.8)
    assert rows.count("q") == {}


def test_search_finds_the_best_live_rows_behind_better_expired_or_other_tier_ones(
        storage: Storage) -> None:
    rows = storage.memory
    now = time.time()
    for i in range(60):  # the best matches: expired, or in a tier not asked for
        _add(rows, "p", f"apple apple apple {i}", tier=0, expires_at=now - 1, cap=1000)
        _add(rows, "p", f"apple apple apple long {i}", tier=2, cap=1000)
    weaker = {_add(rows, "p", f"apple and other words {i}", tier=1, cap=1000)
              for i in range(5)}
    found = rows.search("p", query_words("apple"), (1,), now, [], 50)
    assert {row.id for row, _ in found} == weaker
    found = rows.search("p", query_words("apple"), (0, 1, 2), now, [], 50)
    assert len(found) == 50 and all(row.tier == 2 for row, _ in found)
    assert [rel for _, rel in found] == sorted((rel for _, rel in found), reverse=True)
    found = rows.search("p", query_words("apple"), (0, 1), now, [], 3)
    assert {row.id for row, _ in found} <= weaker and len(found) == 3
