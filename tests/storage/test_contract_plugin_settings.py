"""The operator-settings contract (omnicore.storage.settings_rows): every backend must pass."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from omnicore.storage import Storage

pytestmark = pytest.mark.store("plugin_settings")


def _put(key: str, value: Any) -> Any:
    return lambda doc: {**doc, key: value}


def test_a_change_round_trips_and_numbers_grow(storage: Storage) -> None:
    rows = storage.plugin_settings
    assert rows.get("echo") is None and rows.all() == [] and rows.last_seq() == 0
    first = rows.change("echo", _put("grants", {"kv": {}}), by="ada", at=10.0)
    assert first.doc == {"grants": {"kv": {}}} and first.updated_by == "ada"
    second = rows.change("echo", _put("config", {"n": 1, "deep": {"x": [1, "a"]}}), by=None,
                         at=11.0)
    assert second.seq > first.seq and rows.last_seq() == second.seq
    got = rows.get("echo")
    assert got == second
    assert got is not None and got.doc == {"grants": {"kv": {}},
                                           "config": {"n": 1, "deep": {"x": [1, "a"]}}}


def test_changes_since_a_number_are_in_order_and_clearing_is_one(storage: Storage) -> None:
    rows = storage.plugin_settings
    a = rows.change("a", _put("enabled", False), by=None, at=1.0)
    b = rows.change("b", _put("limits", {"timeout_ms": 5}), by=None, at=2.0)
    cleared = rows.change("a", lambda _doc: {}, by="cli", at=3.0)
    assert [r.plugin for r in rows.changes(0)] == ["b", "a"]  # a's last change is the newest
    assert [r.seq for r in rows.changes(a.seq)] == [b.seq, cleared.seq]
    assert rows.changes(cleared.seq) == []
    assert rows.changes(0, limit=1)[0].plugin == "b"
    assert [r.plugin for r in rows.all()] == ["b"]  # a cleared plugin is not listed
    assert rows.get("a") is not None and rows.get("a").doc == {}  # type: ignore[union-attr]


def test_an_edit_that_raises_changes_nothing(storage: Storage) -> None:
    rows = storage.plugin_settings
    before = rows.change("echo", _put("config", {"k": "v"}), by=None, at=1.0)

    def refuse(_doc: dict[str, Any]) -> dict[str, Any]:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        rows.change("echo", refuse, by=None, at=2.0)
    assert rows.get("echo") == before and rows.last_seq() == before.seq


def test_concurrent_edits_of_one_plugin_lose_nothing(storage: Storage) -> None:
    """Each edit reads the object another just wrote: eight writers adding a grant each end
    with all eight, and eight distinct change numbers."""
    rows = storage.plugin_settings
    seqs: list[int] = []

    def add(cap: str) -> None:
        def edit(doc: dict[str, Any]) -> dict[str, Any]:
            return {**doc, "grants": {**doc.get("grants", {}), cap: {}}}
        seqs.append(rows.change("echo", edit, by=None, at=1.0).seq)

    threads = [threading.Thread(target=add, args=(f"cap{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = rows.get("echo")
    assert got is not None and set(got.doc["grants"]) == {f"cap{i}" for i in range(8)}
    assert len(set(seqs)) == 8 and got.seq == max(seqs)


def test_names_and_values_are_kept_as_given(storage: Storage) -> None:
    rows = storage.plugin_settings
    doc = {"config": {"ünï": "☃", "quote": "it's \"x\"", "big": 2**53, "f": 0.5, "null": None}}
    rows.change("plügin-1.x", lambda _d: doc, by="zoë", at=1.5)
    got = rows.get("plügin-1.x")
    assert got is not None and got.doc == doc and got.updated_by == "zoë"
    assert got.updated_at == 1.5
