"""omnicore:vectors (specs/abi.md §4.5) through a real wasm guest, and the store behind it.

The WAT guest passes its input to one host function per handler: ``upsert``/``delete`` answer
the i32 status (LE), ``search``/``query`` return the host's packed result as their own (a
refusal is a GuestError starting with the status name). Index files are checked on disk:
deleted, truncated and stale ones are rebuilt from SQLite.
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wasmtime

from omnicore.app import OmniApp
from omnicore.errors import ConfigError, GuestError

VECTORS_WAT = r"""
(module
  (import "omnicore:vectors" "upsert"
    (func $upsert (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "omnicore:vectors" "search" (func $search (param i32 i32 i32 i32 i32) (result i64)))
  (import "omnicore:vectors" "query"
    (func $query (param i32 i32 i32 i32 i32 i32 i32) (result i64)))
  (import "omnicore:vectors" "delete" (func $delete (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  (global $bump (mut i32) (i32.const 0x20000))
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.and (i32.add (i32.add (global.get $bump) (local.get $n))
                                        (i32.const 7)) (i32.const -8)))
    (if (i32.gt_u (global.get $bump) (i32.const 0x40000)) (then (return (i32.const 0))))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  (func $status (param $s i32) (result i64)
    (i32.store (i32.const 0x1f000) (local.get $s))
    (i64.or (i64.shl (i64.const 0x1f000) (i64.const 32)) (i64.const 4)))
  ;; input: coll_len, coll, id_len, id, dim, floats, meta (rest)
  (func (export "upsert") (param $p i32) (param $n i32) (result i64)
    (local $c i32) (local $cl i32) (local $i i32) (local $il i32) (local $v i32) (local $dim i32)
    (local $m i32)
    (local.set $cl (i32.load (local.get $p)))
    (local.set $c (i32.add (local.get $p) (i32.const 4)))
    (local.set $il (i32.load (i32.add (local.get $c) (local.get $cl))))
    (local.set $i (i32.add (i32.add (local.get $c) (local.get $cl)) (i32.const 4)))
    (local.set $dim (i32.load (i32.add (local.get $i) (local.get $il))))
    (local.set $v (i32.add (i32.add (local.get $i) (local.get $il)) (i32.const 4)))
    (local.set $m (i32.add (local.get $v) (i32.mul (local.get $dim) (i32.const 4))))
    (call $status (call $upsert (local.get $c) (local.get $cl) (local.get $i) (local.get $il)
                                (local.get $v) (local.get $dim) (local.get $m)
                                (i32.sub (i32.add (local.get $p) (local.get $n)) (local.get $m)))))
  ;; input: coll_len, coll, k, dim, floats
  (func (export "search") (param $p i32) (param $n i32) (result i64)
    (local $cl i32) (local $q i32)
    (local.set $cl (i32.load (local.get $p)))
    (local.set $q (i32.add (i32.add (local.get $p) (i32.const 4)) (local.get $cl)))
    (call $search (i32.add (local.get $p) (i32.const 4)) (local.get $cl)
                  (i32.add (local.get $q) (i32.const 8))
                  (i32.load (i32.add (local.get $q) (i32.const 4)))
                  (i32.load (local.get $q))))
  ;; input: coll_len, coll, k, dim, filter_len, filter, floats
  (func (export "query") (param $p i32) (param $n i32) (result i64)
    (local $cl i32) (local $q i32) (local $fl i32)
    (local.set $cl (i32.load (local.get $p)))
    (local.set $q (i32.add (i32.add (local.get $p) (i32.const 4)) (local.get $cl)))
    (local.set $fl (i32.load (i32.add (local.get $q) (i32.const 8))))
    (call $query (i32.add (local.get $p) (i32.const 4)) (local.get $cl)
                 (i32.add (i32.add (local.get $q) (i32.const 12)) (local.get $fl))
                 (i32.load (i32.add (local.get $q) (i32.const 4)))
                 (i32.load (local.get $q))
                 (i32.add (local.get $q) (i32.const 12)) (local.get $fl)))
  ;; input: coll_len, coll, id (rest)
  (func (export "delete") (param $p i32) (param $n i32) (result i64)
    (local $cl i32) (local $i i32)
    (local.set $cl (i32.load (local.get $p)))
    (local.set $i (i32.add (i32.add (local.get $p) (i32.const 4)) (local.get $cl)))
    (call $status (call $delete (i32.add (local.get $p) (i32.const 4)) (local.get $cl)
                                (local.get $i) (i32.sub (i32.add (local.get $p) (local.get $n))
                                                        (local.get $i)))))
)
"""

NOT_FOUND, INVALID, QUOTA, TOO_LARGE = -1, -3, -4, -6


def vectors_wasm(name: str) -> bytes:
    from omnicore.sandbox import wasmbin

    return wasmbin.set_custom_section(wasmtime.wat2wasm(VECTORS_WAT), "omnicore.manifest",
                                      json.dumps({"name": name}).encode())


def _s(text: str) -> bytes:
    b = text.encode()
    return struct.pack("<I", len(b)) + b


def _f(vec: list[float]) -> bytes:
    return struct.pack(f"<I{len(vec)}f", len(vec), *vec)


class Guest:
    def __init__(self, app: OmniApp, name: str) -> None:
        self.app, self.name = app, name

    def upsert(self, coll: str, vid: str, vec: list[float], meta: bytes | dict[str, Any] = b""
               ) -> int:
        m = json.dumps(meta).encode() if isinstance(meta, dict) else meta
        out = self.app.plugins.call(self.name, "upsert", _s(coll) + _s(vid) + _f(vec) + m)
        return int(struct.unpack("<i", out)[0])

    def search(self, coll: str, vec: list[float], k: int = 10) -> Any:
        data = _s(coll) + struct.pack("<I", k) + _f(vec)
        return json.loads(self.app.plugins.call(self.name, "search", data))

    def query(self, coll: str, vec: list[float], k: int, flt: bytes | dict[str, Any]) -> Any:
        f = json.dumps(flt).encode() if isinstance(flt, dict) else flt
        data = _s(coll) + struct.pack("<II", k, len(vec)) + struct.pack("<I", len(f)) + f + \
            struct.pack(f"<{len(vec)}f", *vec)
        return json.loads(self.app.plugins.call(self.name, "query", data))

    def delete(self, coll: str, vid: str) -> int:
        out = self.app.plugins.call(self.name, "delete", _s(coll) + vid.encode())
        return int(struct.unpack("<i", out)[0])

    def refused(self, fn: Callable[[], Any]) -> str:
        with pytest.raises(GuestError) as info:
            fn()
        return info.value.guest_message


@pytest.fixture
def vec_app(make_app: Callable[..., OmniApp]) -> Iterator[Callable[..., Guest]]:
    app = make_app(builtin_extensions=None, overrides={"sandbox": {"watch": False}})
    app.start()

    def load(name: str = "vp", **grant: Any) -> Guest:
        app.plugins.load(vectors_wasm(name), grants={"vectors": grant})
        return Guest(app, name)

    yield load
    app.stop(grace=0)


def test_upsert_search_delete(vec_app: Callable[..., Guest]) -> None:
    g = vec_app()
    assert g.upsert("docs", "a", [1, 0, 0], {"title": "A", "lang": "en"}) == 0
    assert g.upsert("docs", "b", [0.9, 0.1, 0], {"title": "B"}) == 0
    assert g.upsert("docs", "c", [0, 0, 1]) == 0
    hits = g.search("docs", [1, 0, 0], 2)
    assert [h["id"] for h in hits] == ["a", "b"]
    assert hits[0]["metadata"] == {"title": "A", "lang": "en"}
    assert math.isclose(hits[0]["score"], 1.0, abs_tol=1e-5) and hits[1]["score"] < 1.0
    assert g.upsert("docs", "a", [0, 0, 1], {"title": "A2"}) == 0     # replace
    assert g.search("docs", [0, 0, 1], 1)[0]["id"] in ("a", "c")
    assert g.delete("docs", "c") == 1 and g.delete("docs", "c") == 0
    assert [h["id"] for h in g.search("docs", [0, 0, 1], 5)] == ["a", "b"]
    assert g.delete("nope", "a") == NOT_FOUND
    [info] = g.app.vectors.for_plugin("vp").collections()
    assert (info.name, info.dim, info.count, info.metric) == ("docs", 3, 2, "cosine")


def test_metadata_equality_filter(vec_app: Callable[..., Guest]) -> None:
    g = vec_app()
    for i in range(20):
        g.upsert("docs", f"d{i}", [1, i / 20, 0], {"lang": "en" if i % 2 else "fr", "n": i})
    hits = g.query("docs", [1, 0, 0], 5, {"lang": "fr"})
    assert len(hits) == 5 and all(h["metadata"]["lang"] == "fr" for h in hits)
    assert [h["id"] for h in g.query("docs", [1, 0, 0], 5, {"lang": "fr", "n": 4})] == ["d4"]
    assert g.query("docs", [1, 0, 0], 5, {"lang": "de"}) == []
    assert g.query("docs", [1, 0, 0], 3, b"")[0]["id"] == "d0"
    assert g.refused(lambda: g.query("docs", [1, 0, 0], 3, b"{bad")).startswith("INVALID")
    assert g.refused(lambda: g.query("docs", [1, 0, 0], 3, {"x": [1]})).startswith("INVALID")


def test_bad_vectors_and_names_get_statuses(vec_app: Callable[..., Guest]) -> None:
    g = vec_app(max_dim=8, max_metadata_bytes=100)
    assert g.upsert("docs", "a", [1, 2, 3]) == 0
    assert g.upsert("docs", "b", [1, 2]) == INVALID                   # wrong dimension
    assert g.upsert("docs", "b", [1, float("nan"), 3]) == INVALID
    assert g.upsert("docs", "b", [1, float("inf"), 3]) == INVALID
    assert g.upsert("docs", "b", [1, 2, 3], b"[1]") == INVALID        # metadata not an object
    assert g.upsert("docs", "b", [1, 2, 3], b"{nope") == INVALID
    # Python's json accepts NaN/Infinity; stored, they would come back as invalid JSON.
    assert g.upsert("docs", "b", [1, 2, 3], b'{"score": NaN}') == INVALID
    assert g.upsert("docs", "b", [1, 2, 3], b'{"score": -Infinity}') == INVALID
    assert g.upsert("docs", "b", [1, 2, 3], {"x": "y" * 200}) == TOO_LARGE
    assert g.upsert("wide", "b", [1.0] * 9) == TOO_LARGE              # over max_dim
    assert g.upsert("docs", "", [1, 2, 3]) == INVALID
    assert g.upsert("bad/name", "b", [1, 2, 3]) == INVALID
    assert g.upsert("docs", "b", []) == INVALID
    assert g.refused(lambda: g.search("docs", [1, 2], 3)).startswith("INVALID")
    assert g.refused(lambda: g.search("nope", [1, 2, 3], 3)).startswith("NOT_FOUND")
    assert g.refused(lambda: g.search("docs", [1, 2, 3], 0)).startswith("INVALID")
    [info] = g.app.vectors.for_plugin("vp").collections()
    assert info.count == 1                                            # nothing half-written
    assert g.search("docs", [1, 2, 3], 3)[0]["id"] == "a"


def test_a_query_with_nan_or_infinity_is_invalid_on_the_hnsw_path(
        vec_app: Callable[..., Guest], monkeypatch: pytest.MonkeyPatch) -> None:
    import omnicore.storage.vectors as vectors_mod

    monkeypatch.setattr(vectors_mod, "EXACT_BELOW", 0)  # checked after the walk there
    g = vec_app()
    for i in range(20):
        assert g.upsert("docs", f"d{i}", [1, i, 0], {"n": i}) == 0
    for bad in (math.nan, math.inf, -math.inf):
        assert g.refused(lambda b=bad: g.search("docs", [1, b, 0], 3)).startswith("INVALID")
        assert g.refused(lambda b=bad: g.query("docs", [b, 0, 0], 3, {"n": 1})
                         ).startswith("INVALID")
    assert g.search("docs", [1, 2, 0], 1)[0]["id"] == "d2"


def test_quotas_from_the_grant(vec_app: Callable[..., Guest]) -> None:
    g = vec_app(max_collections=2, max_vectors=3, max_bytes=4 * 2 * 3 + 3 + 40)
    assert g.upsert("a", "1", [1, 0]) == 0
    assert g.upsert("b", "1", [1, 0]) == 0
    assert g.upsert("c", "1", [1, 0]) == QUOTA                        # third collection
    assert g.upsert("a", "2", [1, 1]) == 0
    assert g.upsert("a", "3", [1, 1]) == QUOTA                        # fourth vector
    assert g.upsert("a", "2", [0, 1]) == 0                            # replacing is fine
    assert g.upsert("a", "2", [0, 1], {"k": "v" * 60}) == QUOTA       # over max_bytes
    assert g.delete("b", "1") == 1
    assert g.upsert("a", "3", [1, 1]) == 0
    assert sum(c.count for c in g.app.vectors.for_plugin("vp").collections()) == 3


def test_plugins_see_only_their_own_collections(vec_app: Callable[..., Guest]) -> None:
    a, b = vec_app("a"), vec_app("b")
    a.upsert("docs", "x", [1, 0])
    assert b.refused(lambda: b.search("docs", [1, 0])).startswith("NOT_FOUND")
    assert b.delete("docs", "x") == NOT_FOUND
    b.upsert("docs", "y", [0, 1, 0])                                  # its own, other dim
    assert [h["id"] for h in a.search("docs", [1, 0])] == ["x"]


@pytest.mark.parametrize("grant, match", [({"max_vectors": 0}, "positive"),
                                          ({"max_vecs": 1}, "unknown option")])
def test_bad_grants(vec_app: Callable[..., Guest], grant: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        vec_app(**grant)


def _fill(app: OmniApp, n: int, dim: int, seed: int = 7) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((n, dim)).astype(np.float32)
    view = app.vectors.for_plugin("big")
    for i, row in enumerate(data):
        view.upsert("emb", f"v{i}", row, {"i": i})
    return data


def _exact_top(data: np.ndarray, q: np.ndarray, k: int) -> list[str]:
    norm = data / np.linalg.norm(data, axis=1, keepdims=True)
    return [f"v{i}" for i in np.argsort(-(norm @ (q / np.linalg.norm(q))))[:k]]


def test_hnsw_recall_and_index_files_rebuilt_when_lost_truncated_or_stale(
        make_app: Callable[..., OmniApp], tmp_path: Path) -> None:
    app = make_app("persist", builtin_extensions=None)
    n, dim = 3000, 16
    data = _fill(app, n, dim)
    queries = np.random.default_rng(1).standard_normal((20, dim)).astype(np.float32)
    view = app.vectors.for_plugin("big")
    assert view.collections()[0].index == "hnsw"
    expected = [[h.id for h in view.search("emb", q, 10)] for q in queries]
    recall = np.mean([len(set(e) & set(_exact_top(data, q, 10))) / 10
                      for e, q in zip(expected, queries, strict=True)])
    assert recall >= 0.9
    assert app.vectors.flush() == 1
    index_file = app.data_dir / "vectors" / "1.hnsw"
    assert index_file.stat().st_size > n * dim * 4

    def reopen() -> list[list[str]]:
        app.data.close()
        return [[h.id for h in app.vectors.for_plugin("big").search("emb", q, 10)]
                for q in queries]

    assert reopen() == expected                                 # loaded from the file
    app.vectors.flush()
    index_file.unlink()
    assert _recall(reopen(), data, queries) >= 0.9              # rebuilt from SQLite
    app.vectors.flush()
    with index_file.open("r+b") as fh:
        fh.truncate(index_file.stat().st_size // 3)
    assert _recall(reopen(), data, queries) >= 0.9
    app.vectors.flush()
    app.vectors.for_plugin("big").upsert("emb", "extra", queries[0])   # generation moves on
    app.vectors.for_plugin("big").delete("emb", "v0")
    # A crash: no flush at close, so the file is stale, and its flusher thread is gone.
    crashed = app.data._vectors.take()
    assert crashed is not None
    crashed._flusher.stopping.set()
    crashed._wake.set()
    app.data.close()
    hits = app.vectors.for_plugin("big").search("emb", queries[0], 3)
    assert hits[0].id == "extra" and "v0" not in [h.id for h in
                                                 app.vectors.for_plugin("big").search(
                                                     "emb", data[0], 10)]
    app.data.close()


def _recall(got: list[list[str]], data: np.ndarray, queries: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(_exact_top(data, q, 10))) / 10
                          for g, q in zip(got, queries, strict=True)]))


def test_cli_list_and_stats(make_app: Callable[..., OmniApp], tmp_path: Path) -> None:
    appdir = tmp_path / "cliapp"
    appdir.mkdir()
    (appdir / "omnicore.yaml").write_text("name: v\ndata_dir: data\n")
    app = make_app("cli", builtin_extensions=None, overrides={"data_dir": str(appdir / "data")})
    app.vectors.for_plugin("notes").upsert("docs", "a", [1.0, 2.0], {"t": 1})
    app.data.close()
    out = subprocess.run([sys.executable, "-m", "omnicore.cli", "vectors", "stats", "notes",
                          "--app", str(appdir), "--json"], capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr
    [row] = json.loads(out.stdout)
    assert (row["name"], row["dim"], row["count"], row["index"]) == ("docs", 2, 1, "exact")
    out = subprocess.run([sys.executable, "-m", "omnicore.cli", "vectors", "list", "notes",
                          "--app", str(appdir)], capture_output=True, timeout=120)
    assert out.stdout.decode().split() == ["docs", "2", "cosine", "1"]
