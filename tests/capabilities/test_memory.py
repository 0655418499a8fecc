"""omnicore:memory (specs/abi.md §4.4) through a real wasm guest: tiers, caps with eviction,
ranking, filters, vectors, the embedder hook, consolidation, bad input.

The WAT guest's handlers call one host function each: ``remember`` answers the i64 result
(LE), ``recall`` the i32 status (LE) then what the host wrote, ``forget`` the i32 status.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest
import wasmtime

from omnicore.app import OmniApp
from omnicore.errors import ConfigError

MEMORY_WAT = r"""
(module
  (import "omnicore:memory" "remember" (func $remember (param i32 i32 i32) (result i64)))
  (import "omnicore:memory" "recall" (func $recall (param i32 i32 i32 i32) (result i32)))
  (import "omnicore:memory" "forget" (func $forget (param i64) (result i32)))
  (memory (export "memory") 8)
  (global $bump (mut i32) (i32.const 0x60000))
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.and (i32.add (i32.add (global.get $bump) (local.get $n))
                                        (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  ;; input: tier (i32 LE), item
  (func (export "remember") (param $p i32) (param $n i32) (result i64)
    (i64.store (i32.const 0x10000)
      (call $remember (i32.load (local.get $p)) (i32.add (local.get $p) (i32.const 4))
                      (i32.sub (local.get $n) (i32.const 4))))
    (i64.or (i64.shl (i64.const 0x10000) (i64.const 32)) (i64.const 8)))
  (func (export "recall") (param $p i32) (param $n i32) (result i64)
    (local $r i32)
    (local.set $r (call $recall (local.get $p) (local.get $n) (i32.const 0x10004)
                                (i32.const 0x40000)))
    (i32.store (i32.const 0x10000) (local.get $r))
    (i64.or (i64.shl (i64.const 0x10000) (i64.const 32))
            (i64.extend_i32_u (i32.add (i32.const 4)
              (select (local.get $r) (i32.const 0)
                (i32.and (i32.gt_s (local.get $r) (i32.const 0))
                         (i32.le_s (local.get $r) (i32.const 0x40000))))))))
  (func (export "forget") (param $p i32) (param $n i32) (result i64)
    (i32.store (i32.const 0x10000) (call $forget (i64.load (local.get $p))))
    (i64.or (i64.shl (i64.const 0x10000) (i64.const 32)) (i64.const 4)))
)
"""

INVALID, QUOTA, TOO_LARGE = -3, -4, -6


def memory_wasm(name: str) -> bytes:
    from omnicore.sandbox import wasmbin

    return wasmbin.set_custom_section(wasmtime.wat2wasm(MEMORY_WAT), "omnicore.manifest",
                                      json.dumps({"name": name}).encode())


class Guest:
    def __init__(self, app: OmniApp, name: str) -> None:
        self.app, self.name = app, name

    def remember(self, tier: int, item: dict[str, Any] | bytes | str) -> int:
        data = item if isinstance(item, bytes) else json.dumps(
            {"text": item} if isinstance(item, str) else item).encode()
        out = self.app.plugins.call(self.name, "remember", struct.pack("<i", tier) + data)
        return int(struct.unpack("<q", out)[0])

    def recall(self, query: dict[str, Any] | bytes | str, **more: Any) -> Any:
        data = query if isinstance(query, bytes) else json.dumps(
            {"query": query, **more} if isinstance(query, str) else query).encode()
        out = self.app.plugins.call(self.name, "recall", data)
        status = struct.unpack("<i", out[:4])[0]
        return json.loads(out[4:]) if status >= 0 else status

    def forget(self, mid: int) -> int:
        out = self.app.plugins.call(self.name, "forget", struct.pack("<q", mid))
        return int(struct.unpack("<i", out)[0])


class Embedder:
    """A deterministic toy embedder (bag of three topics), registered as an extension."""

    name = "toy-embedder"
    topics = (("cat", "dog", "pet"), ("rust", "python", "code"), ("rain", "sun", "weather"))

    def embed(self, texts: list[str]) -> Sequence[Sequence[float]]:
        out = []
        for t in texts:
            words = t.lower().split()
            out.append([float(sum(w.strip(".,") in topic for w in words)) + 0.01
                        for topic in self.topics])
        return out


@pytest.fixture
def mem_app(make_app: Callable[..., OmniApp]) -> Iterator[Callable[..., Guest]]:
    apps: list[OmniApp] = []

    def load(name: str = "mp", embedder: bool = False, **grant: Any) -> Guest:
        if not apps:
            app = make_app(builtin_extensions=None, overrides={"sandbox": {"watch": False}})
            if embedder:
                app.extensions.register(Embedder())
            app.start()
            apps.append(app)
        apps[0].plugins.load(memory_wasm(name), grants={"memory": grant})
        return Guest(apps[0], name)

    yield load
    for app in apps:
        app.stop(grace=0)


def test_remember_recall_forget(mem_app: Callable[..., Guest]) -> None:
    g = mem_app()
    a = g.remember(2, {"text": "the user prefers metric units", "metadata": {"kind": "pref"}})
    b = g.remember(1, "the meeting moved to Tuesday")
    c = g.remember(0, "scratch: units converted")
    assert min(a, b, c) >= 1 and len({a, b, c}) == 3  # ids are random (abi.md §4.4)
    hits = g.recall("metric units", limit=5)
    assert hits[0]["id"] == a and hits[0]["tier"] == 2
    assert hits[0]["metadata"] == {"kind": "pref"} and hits[0]["text"].startswith("the user")
    assert {h["id"] for h in hits} == {a, c}                         # "meeting" does not match
    assert [h["id"] for h in g.recall("units", tiers=[0])] == [c]
    assert set(hits[0]) == {"id", "tier", "text", "metadata", "score", "created_at"}
    assert g.forget(a) == 1 and g.forget(a) == 0
    assert [h["id"] for h in g.recall("metric units")] == [c]


def test_ranking_blends_relevance_and_importance(mem_app: Callable[..., Guest]) -> None:
    g = mem_app()
    low = g.remember(2, {"text": "coffee order: flat white", "importance": 0.1})
    high = g.remember(2, {"text": "coffee order: espresso", "importance": 0.9})
    assert [h["id"] for h in g.recall("coffee order")] == [high, low]
    # With no query, recall lists by importance.
    assert [h["id"] for h in g.recall("")][:2] == [high, low]


def test_metadata_filter(mem_app: Callable[..., Guest]) -> None:
    g = mem_app()
    g.remember(2, {"text": "note about rust", "metadata": {"project": "a"}})
    b = g.remember(2, {"text": "note about rust too", "metadata": {"project": "b"}})
    assert [h["id"] for h in g.recall("rust", filter={"project": "b"})] == [b]
    assert g.recall("rust", filter={"project": ["b"]}) == INVALID


def test_tier_caps_evict_the_least_important(mem_app: Callable[..., Guest]) -> None:
    g = mem_app(max_working=3)
    ids = [g.remember(0, {"text": f"fact {i}", "importance": imp})
           for i, imp in enumerate((0.5, 0.1, 0.9))]
    newest = g.remember(0, {"text": "fact 3", "importance": 0.5})
    left = {h["id"] for h in g.recall("fact", tiers=[0])}
    assert left == {ids[0], ids[2], newest}                          # 0.1 was evicted
    assert g.app.memory.for_plugin("mp").count()[0] == 3


def test_plugins_see_only_their_own_memories(mem_app: Callable[..., Guest]) -> None:
    a, b = mem_app("a"), mem_app("b")
    mid = a.remember(2, "a private thought")
    assert b.recall("private thought") == []
    assert b.forget(mid) == 0
    assert a.recall("private")[0]["id"] == mid
    # Ids tell a plugin nothing about how many memories the others keep: no shared counter.
    before = [a.remember(2, f"a thought {i}") for i in range(20)]
    mine = b.remember(2, "b thought")
    assert mine not in (max(before) + 1, mid + 21)
    assert sorted(before) != list(range(min(before), min(before) + 20))
    assert all(0 < i < 2**53 for i in (*before, mine))


@pytest.mark.parametrize("tier, item, status", [
    (3, {"text": "x"}, INVALID),
    (-1, {"text": "x"}, INVALID),
    (0, b"{not json", INVALID),
    (0, b"[]", INVALID),
    (0, {"text": ""}, INVALID),
    (0, {"text": 5}, INVALID),
    (0, {"text": "x", "metadata": [1]}, INVALID),
    (0, b'{"text": "x", "importance": NaN}', INVALID),
    (0, b'{"text": "x", "metadata": {"s": Infinity}}', INVALID),
    (0, {"text": "x", "ttl_s": -5}, INVALID),
    (0, {"text": "x", "importance": 2}, INVALID),
    (0, {"text": "x", "vector": [1, float("nan")]}, INVALID),
    (0, {"text": "x", "surprise": 1}, INVALID),
    (0, {"text": "x" * 2000}, TOO_LARGE),
    (0, {"text": "x", "metadata": {"k": "v" * 2000}}, TOO_LARGE),
])
def test_bad_items_get_statuses_and_store_nothing(mem_app: Callable[..., Guest], tier: int,
                                                  item: Any, status: int) -> None:
    g = mem_app(max_text_bytes=1000, max_metadata_bytes=1000)
    assert g.remember(tier, item) == status
    assert sum(g.app.memory.for_plugin("mp").count().values()) == 0
    assert g.remember(0, "still serving") >= 1


@pytest.mark.parametrize("query", [b"{bad", b"[1]", b'{"query": 1}', b'{"limit": 0}',
                                   b'{"limit": 1000}', b'{"tiers": [7]}', b'{"tiers": 1}',
                                   b'{"query": "x", "nope": 1}'])
def test_bad_queries_are_invalid(mem_app: Callable[..., Guest], query: bytes) -> None:
    g = mem_app()
    assert g.recall(query) == INVALID


def test_fts_syntax_in_a_query_is_just_words(mem_app: Callable[..., Guest]) -> None:
    g = mem_app()
    mid = g.remember(2, "alpha beta")
    for q in ('alpha" OR scope:*', "NEAR(alpha beta)", "alpha AND -beta", "*", '"'):
        result = g.recall(q)
        assert isinstance(result, list), q
    assert g.recall('alpha" OR scope:*')[0]["id"] == mid


def test_vectors_blend_with_text(mem_app: Callable[..., Guest]) -> None:
    g = mem_app()
    cats = g.remember(2, {"text": "notes on felines", "vector": [1, 0, 0]})
    code = g.remember(2, {"text": "notes on compilers", "vector": [0, 1, 0]})
    hits = g.recall({"query": "", "vector": [0.9, 0.1, 0]})
    assert [h["id"] for h in hits][:2] == [cats, code]
    hits = g.recall({"query": "compilers", "vector": [0.9, 0.1, 0]})
    assert {h["id"] for h in hits} == {cats, code}
    assert g.recall({"query": "x", "vector": [1, 0]}) == INVALID     # wrong dimension
    g.forget(cats)
    assert [h["id"] for h in g.recall({"query": "", "vector": [1, 0, 0]})] == [code]


def test_an_extension_embedder_is_used_for_text_only_plugins(
        mem_app: Callable[..., Guest]) -> None:
    g = mem_app(embedder=True)
    pets = g.remember(2, "my cat and my dog")
    g.remember(2, "python code review")
    # No shared word with "pet", but the embedder puts both on the pet topic.
    assert g.recall("pet")[0]["id"] == pets


def test_consolidation_expires_promotes_and_decays(mem_app: Callable[..., Guest]) -> None:
    g = mem_app()
    store = g.app.memory
    gone = g.remember(0, {"text": "short lived", "ttl_s": 1})
    keep = g.remember(1, "recalled often")
    for _ in range(3):
        assert g.recall("recalled often")[0]["id"] == keep
    result = store.consolidate(now=time.time() + 5)
    assert result == {"expired": 1, "promoted": 1}
    assert g.recall("short lived") == []
    assert g.recall("recalled often")[0]["tier"] == 2
    assert gone not in {h["id"] for h in g.recall("")}


@pytest.mark.parametrize("grant, match", [({"max_working": 0}, "positive"),
                                          ({"max_items": 1}, "unknown option")])
def test_bad_grants(mem_app: Callable[..., Guest], grant: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        mem_app(**grant)
