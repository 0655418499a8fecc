"""The vector store's durability and caches (omnicore.storage.vectors): an index file written
before a crash is reloaded and only the changes after it replayed, a host thread writes
indexes after enough changes, an update after a delete leaves no stale copy in the graph, and
a reopened index drops what was deleted after its file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import omnicore.storage.vectors as vectors_mod
from omnicore.app import OmniApp
from omnicore.storage.vectors import VectorStore
from tests.native import avx_instructions
from tests.waiting import eventually


@pytest.fixture
def app(make_app: Callable[..., OmniApp]) -> OmniApp:
    return make_app("vs", builtin_extensions=None)


def store(app: OmniApp) -> VectorStore:
    return VectorStore(app.storage.vectors, app.data_dir / "vectors")


def crash(s: VectorStore) -> None:
    """Stop the store's flusher thread without writing anything, as a kill -9 would."""
    s._flusher.stopping.set()
    s._wake.set()


def test_a_crash_replays_only_the_changes_since_the_last_flush(
        app: OmniApp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectors_mod, "EXACT_BELOW", 0)  # every search walks the HNSW graph
    rng = np.random.default_rng(2)
    data = rng.standard_normal((300, 16)).astype(np.float32)
    first = store(app)
    view = first.for_plugin("p")
    for i, row in enumerate(data):
        view.upsert("emb", f"v{i}", row, {"i": i})
    assert first.flush() == 1
    moved, extra = rng.standard_normal((2, 16)).astype(np.float32)
    view.upsert("emb", "extra", extra, {"new": True})
    view.upsert("emb", "v1", moved, {"i": "moved"})
    assert view.delete("emb", "v2")
    crash(first)

    second = store(app)
    after = second.for_plugin("p")
    idx = second.index(*second.collection("p", "emb"))  # type: ignore[misc]
    assert idx.replayed == 2 and idx.live == 300
    assert [(h.id, h.metadata) for h in after.search("emb", extra, 1)] == [("extra", {"new": True})]
    hits = after.search("emb", moved, 5)
    assert (hits[0].id, hits[0].metadata) == ("v1", {"i": "moved"}) and hits[0].score > 0.999
    assert len({h.id for h in hits}) == len(hits)
    assert "v2" not in [h.id for h in after.search("emb", data[2], 10)]
    assert json.loads(after.search_json("emb", data[3], 1)) == [
        {"id": "v3", "score": 1.0, "metadata": {"i": 3}}]

    assert second.flush() == 1  # a file at the latest generation replays nothing
    crash(second)
    third = store(app)
    assert third.index(*third.collection("p", "emb")).replayed == 0  # type: ignore[misc]
    third.close()


def test_an_update_after_a_delete_leaves_no_stale_copy(
        app: OmniApp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectors_mod, "EXACT_BELOW", 0)
    s = store(app)
    view = s.for_plugin("p")
    old = np.array([1, 0, 0, 0], np.float32)
    view.upsert("emb", "a", old)
    view.upsert("emb", "b", [0, 1, 0, 0])
    view.upsert("emb", "c", [0, 0, 1, 0])
    view.delete("emb", "b")  # a deleted slot that an update must not move into
    view.upsert("emb", "a", [0, 0, 0, 1])
    hits = view.search("emb", old, 3)
    assert sorted(h.id for h in hits) == ["a", "c"]
    assert all(abs(h.score) < 1e-6 for h in hits)  # the old "a" is no longer in the graph
    s.close()


def test_a_host_thread_writes_indexes_after_enough_changes(
        app: OmniApp, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vectors_mod, "FLUSH_AFTER", 5)
    s = store(app)
    view = s.for_plugin("p")
    for i in range(5):
        view.upsert("emb", f"v{i}", [1.0, float(i)])
    sidecar = Path(app.data_dir / "vectors" / "1.json")
    eventually(sidecar.exists, "the flusher thread's index file")
    assert json.loads(sidecar.read_text())["generation"] == 5
    crash(s)
    again = store(app)
    assert again.index(*again.collection("p", "emb")).replayed == 0  # type: ignore[misc]
    again.close()


@pytest.mark.parametrize("tombstones", ["kept", "too old"])
def test_a_reopened_index_marks_what_was_deleted_after_its_file(
        app: OmniApp, tombstones: str) -> None:
    """From the deletes since the file's generation, or, when the backend no longer keeps
    deletes that old, from the rows: either way the stale labels leave the graph."""
    first = store(app)
    view = first.for_plugin("p")
    for i in range(20):
        view.upsert("emb", f"v{i}", [1.0, float(i), 0.5])
    assert first.flush() == 1
    coll = first.collection("p", "emb")
    assert coll is not None
    labels = {vid: label for label, vid, _ in first.rows.entries(coll[0])}
    assert view.delete("emb", "v3") and view.delete("emb", "v7")
    crash(first)
    if tombstones == "too old":
        app.storage.backend.write(lambda c: c.execute(  # type: ignore[attr-defined]
            "UPDATE vector_collections SET deletes_from = 1000000"))
        assert first.rows.deleted(coll[0], 20) is None
    else:
        assert sorted(first.rows.deleted(coll[0], 20) or []) == sorted(
            [labels["v3"], labels["v7"]])

    second = store(app)
    idx = second.index(*coll)
    assert idx.live == 18 and idx.replayed == 0
    for vid in ("v3", "v7"):
        with pytest.raises(RuntimeError):  # hnswlib: already marked deleted
            idx.hnsw.mark_deleted(labels[vid])
    idx.hnsw.mark_deleted(labels["v4"])  # a live one is not
    second.close()


def test_the_index_library_is_built_for_any_machine_of_its_architecture() -> None:
    """The venv's hnswlib (built from its sdist by scripts/setup-toolchains.sh, there being no
    x86-64 wheel) holds no AVX instruction: its build adds -march=native unless told not to,
    and that code ran on the machine that built it alone, and not under valgrind, which the
    benches' ``--counter instructions`` runs the host under (as the image's: test_image.py)."""
    import hnswlib

    assert avx_instructions(Path(hnswlib.__file__)) == 0
