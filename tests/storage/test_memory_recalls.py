"""Counted recalls (omnicore.storage.memory: ``MemoryStore.touch``) are written in batches, and
every reader of the counts sees them all: eviction, consolidation, the next store after a
stop, and another store once the batch is due."""

from __future__ import annotations

import pytest

import omnicore.storage.memory as memory_mod
from omnicore.storage import Storage
from omnicore.storage.memory import MemoryPolicy, MemoryStore

pytestmark = pytest.mark.store("memory")  # on every backend (tests/storage/conftest.py)


def test_eviction_sees_recalls_not_yet_written(storage: Storage) -> None:
    store = MemoryStore(storage.memory)
    mem = store.for_plugin("p", MemoryPolicy(max_short=2))
    recalled = mem.remember(1, "recalled often")
    idle = mem.remember(1, "never recalled")  # the newer: the one kept, were it not for recalls
    mem.touch([recalled])
    assert store._touched  # still in the batch: the insert below must write it first
    mem.remember(1, "a third one")
    ids = {m.id for m in mem.recall("", tiers=[1])}
    assert recalled in ids and idle not in ids and len(ids) == 2
    store.stop()


def test_consolidation_counts_every_recall_of_the_batch(storage: Storage) -> None:
    store = MemoryStore(storage.memory)
    mem = store.for_plugin("p")
    thrice = mem.remember(1, "recalled three times")
    twice = mem.remember(1, "recalled twice")
    mem.touch([thrice, twice])
    mem.touch([thrice, twice])
    mem.touch([thrice])
    assert store.consolidate(promote_after=3)["promoted"] == 1
    assert {m.id: m.tier for m in mem.recall("", tiers=[1, 2])} == {thrice: 2, twice: 1}
    store.stop()


def test_a_stop_writes_the_batch_for_the_next_store(storage: Storage) -> None:
    first = MemoryStore(storage.memory)
    mid = first.for_plugin("p").remember(1, "recalled once")
    first.for_plugin("p").touch([mid])
    first.stop()
    second = MemoryStore(storage.memory)
    assert second.consolidate(promote_after=1)["promoted"] == 1
    second.stop()


def test_a_due_batch_is_written_by_the_recall_that_finds_it_due(
        storage: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(memory_mod, "TOUCH_EVERY_S", 0.0)
    writer, reader = MemoryStore(storage.memory), MemoryStore(storage.memory)
    mid = writer.for_plugin("p").remember(1, "recalled once")
    writer.for_plugin("p").touch([mid])
    assert not writer._touched
    # Another store over the same rows (another host) sees the count without any stop.
    assert reader.consolidate(promote_after=1)["promoted"] == 1
    writer.stop()
    reader.stop()


def test_a_recall_is_counted_for_its_own_plugin_only(storage: Storage) -> None:
    store = MemoryStore(storage.memory)
    mine = store.for_plugin("a").remember(1, "a's memory")
    store.for_plugin("b").touch([mine])  # b names a's id: counts nothing
    assert store.consolidate(promote_after=1)["promoted"] == 0
    store.for_plugin("a").touch([mine])
    assert store.consolidate(promote_after=1)["promoted"] == 1
    store.stop()
