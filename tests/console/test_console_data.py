"""Vector collections and memories in the console: per-plugin stats, a recall box, and the
admin-only drop and forget, against the app's real stores (SQLite files, hnswlib)."""

from __future__ import annotations

import httpx

from omnicore.storage.vectors import EXACT_BELOW
from tests.console.conftest import Host, error_of


def seed_vectors(host: Host) -> None:
    docs = host.app.vectors.for_plugin("greeter-rust")
    docs.create("docs", 3)
    for i in range(5):
        docs.upsert("docs", f"d{i}", [1.0, float(i), 0.5], {"n": i})
    other = host.app.vectors.for_plugin("indexer")
    other.create("big", 2, metric="l2")
    for i in range(EXACT_BELOW + 1):
        other.upsert("big", str(i), [float(i), 1.0])


def test_collections_with_counts_dimension_and_index_state(host: Host,
                                                           admin: httpx.Client) -> None:
    seed_vectors(host)
    items = admin.get("/api/v1/vectors").json()["items"]
    by_name = {(c["plugin"], c["name"]): c for c in items}
    docs, big = by_name[("greeter-rust", "docs")], by_name[("indexer", "big")]
    assert (docs["count"], docs["dim"], docs["metric"]) == (5, 3, "cosine")
    assert (big["count"], big["dim"], big["metric"]) == (EXACT_BELOW + 1, 2, "l2")
    assert docs["bytes"] > 5 * 3 * 4
    assert docs["index"] == "exact" and big["index"] == "hnsw"  # upserts opened both
    only = admin.get("/api/v1/vectors", params={"plugin": "indexer"}).json()
    assert [c["name"] for c in only["items"]] == ["big"] and only["total"] == 1

    page = admin.get("/data/vectors")
    assert page.status_code == 200
    for text in ("docs", "big", "hnsw", "exact", "cosine", str(EXACT_BELOW + 1)):
        assert text in page.text


def test_dropping_a_collection_needs_an_admin(host: Host, admin: httpx.Client) -> None:
    seed_vectors(host)
    with host.client(host.viewer_token) as viewer:
        assert viewer.get("/api/v1/vectors").status_code == 200
        r = viewer.delete("/api/v1/vectors/greeter-rust/docs")
        assert r.status_code == 403
    assert [c.name for c in host.app.vectors.for_plugin("greeter-rust").collections()] == \
        ["docs"]
    assert admin.delete("/api/v1/vectors/greeter-rust/docs").status_code == 204
    assert host.app.vectors.for_plugin("greeter-rust").collections() == []
    r = admin.delete("/api/v1/vectors/greeter-rust/docs")
    assert r.status_code == 404 and error_of(r)["type"] == "UnknownCollection"

    c, csrf = host.browser_session()
    r = c.post("/data/vectors", data={"plugin": "indexer", "collection": "big"})
    assert r.status_code == 403  # no CSRF token
    r = c.post("/data/vectors", data={"plugin": "indexer", "collection": "big",
                                      "csrf": csrf})
    assert r.status_code == 303 and "collection-dropped" in r.headers["location"]
    assert host.app.vectors.plugins() == []
    assert "No collections" in c.get("/data/vectors").text


def seed_memory(host: Host) -> None:
    mem = host.app.memory.for_plugin("greeter-rust")
    mem.remember(0, "the user is looking at invoices right now")
    mem.remember(1, "Ada prefers short answers", {"topic": "style"})
    mem.remember(2, "Ada's company is Analytical Engines Ltd", importance=0.9)
    mem.remember(2, "invoices are due on the first of the month")


def test_memory_counts_per_tier_and_recall(host: Host, admin: httpx.Client) -> None:
    host.app.plugins.grant("greeter-rust", "memory", {"max_long": 50})
    seed_memory(host)
    rows = admin.get("/api/v1/memory").json()["items"]
    assert rows == [{"plugin": "greeter-rust", "total": 4, "tiers": {
        "working": {"count": 1, "cap": 1000}, "short_term": {"count": 1, "cap": 10000},
        "long_term": {"count": 2, "cap": 50}}}]

    found = admin.get("/api/v1/memory/greeter-rust/recall",
                      params={"query": "invoices"}).json()
    texts = [m["text"] for m in found["items"]]
    assert len(texts) == 2 and all("invoices" in t for t in texts)
    only_long = admin.get("/api/v1/memory/greeter-rust/recall",
                          params=[("query", "invoices"), ("tier", "2")]).json()
    assert [m["text"] for m in only_long["items"]] == \
        ["invoices are due on the first of the month"]
    everything = admin.get("/api/v1/memory/greeter-rust/recall").json()["items"]
    assert everything[0]["text"].startswith("Ada's company")  # most important first
    for params in ({"tier": "7"}, {"limit": "0"}, {"limit": "101"}):
        r = admin.get("/api/v1/memory/greeter-rust/recall", params=params)
        assert r.status_code == 400 and error_of(r)["type"] == "BadParameter", params

    # Looking is not recalling: nothing gets counted towards promotion.
    for _ in range(5):
        admin.get("/api/v1/memory/greeter-rust/recall", params={"query": "answers"})
    assert host.app.memory.consolidate()["promoted"] == 0

    page = admin.get("/data/memory", params={"plugin": "greeter-rust", "query": "invoices"})
    assert page.status_code == 200 and "due on the first" in page.text
    assert "Analytical" not in page.text.split('id="recalled"')[1]
    assert admin.get("/data/memory", params={"plugin": "greeter-rust",
                                             "limit": "x"}).status_code == 400


def test_forgetting_a_memory_needs_an_admin(host: Host, admin: httpx.Client) -> None:
    seed_memory(host)
    mem = host.app.memory.for_plugin("greeter-rust")
    target = mem.recall("prefers")[0].id
    with host.client(host.viewer_token) as viewer:
        assert viewer.get("/api/v1/memory").json()["total"] == 1
        assert viewer.delete(f"/api/v1/memory/greeter-rust/{target}").status_code == 403
    assert sum(mem.count().values()) == 4
    assert admin.delete(f"/api/v1/memory/greeter-rust/{target}").status_code == 204
    assert admin.delete(f"/api/v1/memory/greeter-rust/{target}").status_code == 404
    assert admin.delete("/api/v1/memory/greeter-rust/99999999999999999999").status_code == 404
    assert sum(mem.count().values()) == 3

    c, csrf = host.browser_session()
    other = mem.recall("company")[0].id
    back = "/data/memory?plugin=greeter-rust&query=company"
    r = c.post("/data/memory", data={"plugin": "greeter-rust", "id": str(other),
                                     "csrf": csrf, "back": back})
    assert r.status_code == 303 and r.headers["location"].startswith(back + "&done=")
    r = c.post("/data/memory", data={"plugin": "greeter-rust", "id": str(other),
                                     "csrf": csrf, "back": "https://evil.example/"})
    assert r.status_code == 404
    assert sum(mem.count().values()) == 2


def test_hostile_memory_text_renders_as_text(host: Host, admin: httpx.Client) -> None:
    host.app.memory.for_plugin("greeter-rust").remember(
        2, "<script>alert('mem')</script> remember me", {"k": "<img src=x>"})
    page = admin.get("/data/memory", params={"plugin": "greeter-rust", "query": "remember"})
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text
    assert "<img src=x>" not in page.text
