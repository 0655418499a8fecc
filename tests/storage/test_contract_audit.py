"""The audit log contract (omnicore.storage.audit_rows): every backend must pass these."""

from __future__ import annotations

import pytest

from omnicore.storage import Storage

pytestmark = pytest.mark.store("audit")


def test_entries_round_trip_newest_first(storage: Storage) -> None:
    log = storage.audit
    first = log.append("ada", "grant.add", "echo", None, ["kv"], "127.0.0.1", 10.0)
    second = log.append("token:3", "config.set", "echo", {"n": 1}, {"n": 2}, None, 11.0)
    assert second > first
    got = log.entries()
    assert [e.id for e in got] == [second, first]
    assert got[0].as_dict() == {"id": second, "at": 11.0, "actor": "token:3",
                                "action": "config.set", "target": "echo",
                                "before": {"n": 1}, "after": {"n": 2}, "origin": None}
    assert got[1].before is None and got[1].after == ["kv"]


def test_filters_combine_and_pages_go_back_by_id(storage: Storage) -> None:
    log = storage.audit
    ids = [log.append("ada" if i % 2 else "cli", "grant.add" if i % 3 else "plugin.upload",
                      f"p{i % 2}", None, i, None, float(i)) for i in range(12)]
    assert [e.after for e in log.entries(actor="ada", action_prefix="grant.")] == [
        11, 7, 5, 1]
    assert {e.target for e in log.entries(target="p0")} == {"p0"}
    assert [e.after for e in log.entries(since=9.0)] == [11, 10, 9]
    page = log.entries(limit=5)
    older = log.entries(limit=5, before_id=page[-1].id)
    assert [e.id for e in page + older] == ids[::-1][:10]
    assert log.entries(action_prefix="grant.add%") == []  # a prefix, not a pattern


def test_purge_drops_only_older_entries(storage: Storage) -> None:
    log = storage.audit
    for at in (1.0, 2.0, 3.0):
        log.append("ada", "user.add", None, None, None, None, at)
    assert log.purge(2.5) == 2
    assert [e.at for e in log.entries()] == [3.0]


def test_plugin_filter_takes_the_plugin_and_its_parts_only(storage: Storage) -> None:
    log = storage.audit
    for target in ("echo", "echo/kv", "echo/a%b/c", "echoes/kv", "ech", "user:echo", None,
                   "x/echo"):
        log.append("ada", "grant.add", target, None, None, None, 1.0)
    assert sorted(e.target for e in log.entries(plugin="echo")) == [
        "echo", "echo/a%b/c", "echo/kv"]
    assert log.entries(plugin="e_ho") == [] and log.entries(plugin="ech%") == []
