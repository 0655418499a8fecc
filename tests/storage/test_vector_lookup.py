"""The shortcuts of a vector search keep its answers, on both backends: a query holding NaN
or infinity is refused on every read path and metric (the HNSW path checks it only when its
scores are not finite), and the table of hits by label that a search reads agrees with the
index whatever order its rows load in, also once a collection's labels outgrow the table.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import omnicore.storage.vector_index as index_mod
import omnicore.storage.vectors as vectors_mod
from omnicore.storage import Storage
from omnicore.storage.vectors import BadVector, PluginVectors, VectorStore

pytestmark = pytest.mark.store("vectors")

#: Every read path of a search: the HNSW walk, exact numpy, and both with a filter.
PATHS = {"hnsw": (0, 20_000), "exact": (10_000, 20_000), "filtered-exact": (0, 20_000),
         "filtered-hnsw": (0, 0)}


def store(storage: Storage, tmp: Path) -> VectorStore:
    return VectorStore(storage.vectors, tmp / "vectors")


def both(view: PluginVectors, coll: str, vec: Any, k: int,
         flt: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The hits of the Python and the JSON read paths, which must agree."""
    from_json = json.loads(view.search_json(coll, vec, k, flt))
    assert from_json == [h.as_dict() for h in view.search(coll, vec, k, flt)]
    return from_json  # type: ignore[no-any-return]


def look_up_each(view: PluginVectors, data: np.ndarray, live: list[int],
                 meta: Callable[[int], dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> None:
    """Every live vector ``v<i>`` (``data[i]``, metadata ``meta(i)``) searched for on the
    exact path and the HNSW walk, whose hits both name through the table. Exact: its own
    hit first, and every live one when asked for all. The walk is approximate: a graph of
    a hundred vectors built on two threads once left one unreachable (a CI run), so there
    each hit must be what its label holds: the id, metadata and score of one vector."""
    unit = data / np.linalg.norm(data, axis=1, keepdims=True)
    for exact in (True, False):
        monkeypatch.setattr(vectors_mod, "EXACT_BELOW", 10**9 if exact else 0)
        for i in live:
            hits = both(view, "emb", data[i], 1 if exact else 3)
            if exact:
                assert hits[0] == {"id": f"v{i}", "score": 1.0, "metadata": meta(i)}
            for hit in hits:
                j = int(hit["id"][1:])
                assert j in live and hit["metadata"] == meta(j)
                assert hit["score"] == pytest.approx(float(unit[i] @ unit[j]), abs=1e-4)
        found = {h["id"] for h in both(view, "emb", data[live[0]], len(live))}
        assert found == {f"v{i}" for i in live} if exact else found <= {f"v{i}" for i in live}


def invariant(s: VectorStore) -> None:
    """Each slot of each loaded index's table holds what its dict holds for that label."""
    for idx in s._loaded.values():
        assert all(t == idx.entries.get(label) for label, t in enumerate(idx.table))


@pytest.mark.parametrize("metric", ["cosine", "l2", "ip"])
@pytest.mark.parametrize("path", list(PATHS))
def test_a_query_with_nan_or_infinity_is_refused_on_every_path(
        storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metric: str,
        path: str) -> None:
    exact_below, filtered_below = PATHS[path]
    monkeypatch.setattr(vectors_mod, "EXACT_BELOW", exact_below)
    monkeypatch.setattr(vectors_mod, "EXACT_FILTERED_BELOW", filtered_below)
    s = store(storage, tmp_path)
    view = s.for_plugin("p")
    view.create("emb", 8, metric=metric)
    rng = np.random.default_rng(5)
    for i, row in enumerate(rng.standard_normal((60, 8)).astype(np.float32)):
        view.upsert("emb", f"v{i}", row, {"g": i % 2})
    view.upsert("emb", "huge", np.full(8, 1e30, np.float32), {"g": 1})  # scores overflow
    flt = {"g": 1} if path.startswith("filtered") else None
    for bad in (np.nan, np.inf, -np.inf):
        for at in (0, 7):  # the first and the last dimension
            query = rng.standard_normal(8).astype(np.float32)
            query[at] = bad
            for search in (view.search, view.search_json):
                with pytest.raises(BadVector, match="NaN or infinity"):
                    search("emb", query, 5, flt)
                with pytest.raises(BadVector, match="NaN or infinity"):
                    search("emb", [float(x) for x in query], 5, flt)
    # A finite query is answered, also when its scores overflow (null in JSON, and the
    # infinity itself in Python).
    huge = np.full(8, 1e30, np.float32)
    hits = json.loads(view.search_json("emb", huge, 3, flt))
    assert [h["id"] for h in hits] == [h.id for h in view.search("emb", huge, 3, flt)]
    assert len(hits) == 3
    if metric == "l2":  # 8 x (1e30)^2 is past any float32, but for the huge vector itself
        assert hits[0]["id"] == "huge" and hits[0]["score"] == 0
        assert all(h["score"] is None for h in hits[1:])
    s.close()


def test_the_table_agrees_with_the_index_whatever_order_rows_load_in(
        storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectors_mod, "EXACT_BELOW", 0)
    # A table of one slot per live vector: a row loaded before the lower labels it sits
    # past does not fit yet, and must be in the table once they have made room for it.
    monkeypatch.setattr(index_mod, "_DENSE", 1)
    monkeypatch.setattr(index_mod, "_SLACK", 0)
    first = store(storage, tmp_path)
    view = first.for_plugin("p")
    data = np.random.default_rng(6).standard_normal((120, 8)).astype(np.float32)
    for i, row in enumerate(data):
        view.upsert("emb", f"v{i}", row, {"i": i})
    for i in range(0, 120, 7):
        assert view.delete("emb", f"v{i}")
    first.close()  # writes the index file
    entries = storage.vectors.entries

    def shuffled(coll_id: int) -> list[tuple[int, str, str | None]]:
        rows = entries(coll_id)
        random.Random(coll_id).shuffle(rows)
        rows.sort(key=lambda r: -r[0] if r[0] % 3 == 0 else 0)  # high labels first
        return rows

    monkeypatch.setattr(storage.vectors, "entries", shuffled)
    for reopen in ("from its file", "rebuilt"):
        if reopen == "rebuilt":
            for f in (tmp_path / "vectors").iterdir():
                f.unlink()
        s = store(storage, tmp_path)
        view = s.for_plugin("p")
        look_up_each(view, data, [i for i in range(120) if i % 7], lambda i: {"i": i},
                     monkeypatch)
        invariant(s)
        s.close()


def test_a_collection_whose_labels_outgrow_the_table_still_shows_every_hit(
        storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectors_mod, "EXACT_BELOW", 0)
    monkeypatch.setattr(index_mod, "_DENSE", 2)
    monkeypatch.setattr(index_mod, "_SLACK", 8)
    s = store(storage, tmp_path)
    view = s.for_plugin("p")
    rng = np.random.default_rng(7)
    data = rng.standard_normal((40, 8)).astype(np.float32)
    for i, row in enumerate(data):
        view.upsert("emb", f"v{i}", row, {"round": 0})
    # Labels are never reused: every delete and add takes the next one, far past 2 x 40 + 8.
    for r in range(1, 6):
        for i in range(0, 40, 2):
            assert view.delete("emb", f"v{i}")
            view.upsert("emb", f"v{i}", data[i], {"round": r})
    idx = next(iter(s._loaded.values()))
    assert len(idx.table) <= 2 * 40 + 8 < max(idx.entries)  # bounded, and outgrown
    look_up_each(view, data, list(range(40)), lambda i: {"round": 5 if i % 2 == 0 else 0},
                 monkeypatch)
    assert view.delete("emb", "v1") and view.delete("emb", "v2")  # one in the table, one not
    monkeypatch.setattr(vectors_mod, "EXACT_BELOW", 10**9)
    assert {h["id"] for h in both(view, "emb", data[0], 40)} == {
        f"v{i}" for i in range(40) if i not in (1, 2)}
    invariant(s)
    s.close()
