"""What a search shows for a hit comes from the index's cache of rendered hits
(``Index.entries``: one ``%`` template per label): ids and metadata that look like the
template's own syntax come back as written, a score JSON cannot hold is ``null``, and an
updated, deleted or dropped vector is never shown as it was, on every read path (Python hits
and the JSON the capability returns; exact, HNSW and filtered search; another host's writes).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import omnicore.storage.vectors as vectors_mod
from omnicore.app import OmniApp
from omnicore.storage.vectors import PluginVectors, VectorStore

#: Ids and metadata that a template could mistake for its own placeholders or fields.
NASTY = ['%', '%%', '%.6f', '%s', '100%', 'a","score":%.6f,"metadata":{}}',
         ',"score":%.6f,"metadata":', '"quoted"', 'é ✓ %d', '\\%']


@pytest.fixture
def app(make_app: Callable[..., OmniApp]) -> OmniApp:
    return make_app("vh", builtin_extensions=None)


def store(app: OmniApp, shared: bool = False) -> VectorStore:
    return VectorStore(app.storage.vectors, app.data_dir / "vectors", shared=shared)


def both(view: PluginVectors, coll: str, vec: Any, k: int,
         flt: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The hits of both read paths, which must agree."""
    from_json = json.loads(view.search_json(coll, vec, k, flt))
    assert from_json == [h.as_dict() for h in view.search(coll, vec, k, flt)]
    return from_json  # type: ignore[no-any-return]


@pytest.mark.parametrize("exact_below", [0, 10_000], ids=["hnsw", "exact"])
def test_ids_and_metadata_that_look_like_the_template_come_back_as_written(
        app: OmniApp, monkeypatch: pytest.MonkeyPatch, exact_below: int) -> None:
    monkeypatch.setattr(vectors_mod, "EXACT_BELOW", exact_below)
    s = store(app)
    view = s.for_plugin("p")
    eye = np.eye(len(NASTY), dtype=np.float32)
    for i, vid in enumerate(NASTY):
        view.upsert("emb", vid, eye[i], {"k": vid, vid: "%.6f", "n": i, "tag": "t"})
    for i, vid in enumerate(NASTY):
        meta = {"k": vid, vid: "%.6f", "n": i, "tag": "t"}
        assert both(view, "emb", eye[i], 1) == [{"id": vid, "score": 1.0, "metadata": meta}]
        assert both(view, "emb", eye[i], 1, {"n": i}) == [
            {"id": vid, "score": 1.0, "metadata": meta}]
    assert {h["id"] for h in both(view, "emb", eye[0], len(NASTY), {"tag": "t"})} == set(NASTY)
    s.close()


@pytest.mark.parametrize("exact_below", [0, 10_000], ids=["hnsw", "exact"])
def test_a_score_json_cannot_hold_is_null_beside_finite_ones(
        app: OmniApp, monkeypatch: pytest.MonkeyPatch, exact_below: int) -> None:
    monkeypatch.setattr(vectors_mod, "EXACT_BELOW", exact_below)
    s = store(app)
    view = s.for_plugin("p")
    view.create("ip", 4, metric="ip")
    view.upsert("ip", "huge %.6f", [1e20, 1e20, 1e20, 1e20], {"why": '100% ,"score":%.6f,'})
    view.upsert("ip", "small", [1, 0, 0, 0])
    hits = json.loads(view.search_json("ip", [1e20, 1e20, 1e20, 1e20], 2))
    assert hits[0] == {"id": "huge %.6f", "score": None,
                       "metadata": {"why": '100% ,"score":%.6f,'}}
    assert hits[1]["id"] == "small" and hits[1]["score"] == pytest.approx(1e20, rel=1e-6)
    assert [h.id for h in view.search("ip", [1e20, 1e20, 1e20, 1e20], 2)] == [
        "huge %.6f", "small"]
    s.close()


@pytest.mark.parametrize("exact_below", [0, 10_000], ids=["hnsw", "exact"])
def test_an_updated_deleted_or_dropped_vector_is_never_shown_as_it_was(
        app: OmniApp, monkeypatch: pytest.MonkeyPatch, exact_below: int) -> None:
    monkeypatch.setattr(vectors_mod, "EXACT_BELOW", exact_below)
    s = store(app)
    view = s.for_plugin("p")
    rng = np.random.default_rng(4)
    data = rng.standard_normal((50, 8)).astype(np.float32)
    for i, row in enumerate(data):
        view.upsert("emb", f"v{i}", row, {"v": 1, "g": i % 2})
    view.upsert("emb", "v3", data[3], {"v": 2, "g": 1})  # new metadata, same vector
    view.upsert("emb", "v5", -data[5], {"v": 2, "g": 1})  # new vector
    assert view.delete("emb", "v7")
    assert both(view, "emb", data[3], 1) == [
        {"id": "v3", "score": 1.0, "metadata": {"v": 2, "g": 1}}]
    assert both(view, "emb", -data[5], 1)[0]["id"] == "v5"
    assert "v5" not in {h["id"] for h in both(view, "emb", data[5], 10)}
    for flt in (None, {"g": 1}):
        assert "v7" not in {h["id"] for h in both(view, "emb", data[7], 50, flt)}
    assert view.drop("emb")
    view.upsert("emb", "v3", data[3], {"v": 3})  # the same name again: a new collection
    assert both(view, "emb", data[3], 50) == [
        {"id": "v3", "score": 1.0, "metadata": {"v": 3}}]
    s.close()


def test_another_hosts_update_and_delete_are_never_shown_as_they_were(app: OmniApp) -> None:
    reader, writer = store(app, shared=True), store(app, shared=True)
    mine, theirs = reader.for_plugin("p"), writer.for_plugin("p")
    theirs.upsert("emb", "a", [1, 0, 0], {"v": 1})
    theirs.upsert("emb", "b", [0, 1, 0], {"v": 1})
    assert both(mine, "emb", [1, 0, 0], 1) == [{"id": "a", "score": 1.0, "metadata": {"v": 1}}]
    theirs.upsert("emb", "a", [1, 0, 0], {"v": 2})
    theirs.delete("emb", "b")
    assert both(mine, "emb", [1, 0, 0], 5) == [{"id": "a", "score": 1.0, "metadata": {"v": 2}}]
    reader.close()
    writer.close()
