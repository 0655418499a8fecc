"""app.subscriptions (omnicore.subscriptions): off-path delivery, bounded inboxes, durable
subscriptions, no self-trigger, a hop limit against cycles, a publish budget per plugin.
The plugin is tests.event_fixtures's."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from omnicore.app import OmniApp
from omnicore.errors import ConfigError, PluginLoadError
from omnicore.sandbox.capability import Status
from omnicore.subscriptions import PluginEvent
from tests.event_fixtures import GRANTS, Calls, events_app, events_wasm, pub, seen
from tests.waiting import eventually


@pytest.fixture
def ev_app(make_app: Callable[..., OmniApp]) -> Iterator[OmniApp]:
    app = events_app(make_app)
    yield app
    app.stop(grace=1)


def test_publish_reaches_a_subscriber_with_topic_and_data(ev_app: OmniApp) -> None:
    ev_app.plugins.load(events_wasm("src"), grants=GRANTS)
    ev_app.plugins.load(events_wasm("sink", [{"topic": "plugin.src.order.*",
                                              "handler": "on_event"}]), grants=GRANTS)
    bus = Calls(ev_app, "plugin.src.*")
    assert pub(ev_app, "src", "order.created", b'{"id": 7}') == 0
    bus.wait(lambda evs: len(evs) == 1)
    event = bus.events[0]
    assert isinstance(event, PluginEvent) and event.topic == "plugin.src.order.created"
    assert ev_app.subscriptions.drain(30)
    assert seen(ev_app, "sink") == 1
    assert ev_app.metrics.registry.get_sample_value("omnicore_events_delivered_total", {
        "plugin": "sink", "handler": "on_event", "topic": "plugin.src.order.*"}) == 1
    body = json.loads(ev_app.kv.for_plugin("sink").get("last") or b"")
    assert body == {"topic": "plugin.src.order.created", "data": {"id": 7}}
    assert [r.topic for r in ev_app.storage.events.recent(5)] == ["plugin.src.order.created"]


def test_no_self_trigger_unless_opted_in(ev_app: OmniApp) -> None:
    ev_app.plugins.load(events_wasm("me", [{"topic": "plugin.*.hello", "handler": "on_event"}]),
                        grants=GRANTS)
    ev_app.plugins.load(events_wasm("opt", [{"topic": "plugin.opt.*", "handler": "on_event",
                                             "self": True}]), grants=GRANTS)
    pub(ev_app, "me", "hello")
    pub(ev_app, "opt", "hello")
    assert ev_app.subscriptions.drain(30)
    assert seen(ev_app, "opt") == 1
    # "me" subscribed to every plugin's hello: "opt"'s reached it, its own did not
    assert seen(ev_app, "me") == 1
    assert json.loads(ev_app.kv.for_plugin("me").get("last") or b"")["topic"] == \
        "plugin.opt.hello"


def test_a_cycle_of_plugins_stops_at_the_hop_limit(ev_app: OmniApp) -> None:
    ev_app.plugins.load(events_wasm("a", [{"topic": "plugin.b.ping", "handler": "relay"}]),
                        grants=GRANTS)
    ev_app.plugins.load(events_wasm("b", [{"topic": "plugin.a.ping", "handler": "relay"}]),
                        grants=GRANTS)
    pings = Calls(ev_app, "plugin.*.ping")
    assert pub(ev_app, "a", "ping") == 0
    # hop 1 (a) -> b relays at 2 -> a at 3 -> b at 4 -> a at 5; the publish at hop 6 is refused
    pings.wait(lambda evs: len(evs) == 5)
    assert ev_app.subscriptions.drain(30)
    assert seen(ev_app, "a") + seen(ev_app, "b") == 5    # the fifth relay's publish is refused
    assert ev_app.subscriptions.hop_drops == 1
    assert sorted(e.hops for e in pings.events) == [1, 2, 3, 4, 5]


def test_a_slow_subscriber_never_slows_the_publisher_and_overflow_is_counted(
        ev_app: OmniApp) -> None:
    ev_app.plugins.load(events_wasm("src"), grants=GRANTS)
    ev_app.plugins.load(events_wasm("slow", [{"topic": "plugin.src.*", "handler": "stall"}]),
                        grants=GRANTS, limits={"timeout_ms": 3000})
    for _ in range(10):
        assert pub(ev_app, "src", "tick") == 0           # returns while "slow" spins
    sub = next(s for s in ev_app.subscriptions.all() if s.plugin == "slow")
    assert sub.delivered == 0
    assert sub.dropped in (7, 8)                          # inbox of 2, one in flight at most
    assert len(sub.inbox) <= 2
    labels = {"plugin": "slow", "handler": "stall", "topic": "plugin.src.*"}
    sample = ev_app.metrics.registry.get_sample_value
    assert sample("omnicore_events_dropped_total", labels) == sub.dropped
    assert sample("omnicore_events_delivered_total", labels) == 0
    assert sample("omnicore_events_inbox", labels) == len(sub.inbox)


def test_durable_subscription_goes_through_the_job_queue(ev_app: OmniApp) -> None:
    ev_app.plugins.load(events_wasm("src"), grants=GRANTS)
    ev_app.plugins.load(events_wasm("dur", [{"topic": "plugin.src.*", "handler": "on_event",
                                             "durable": True}]), grants=GRANTS)
    done = Calls(ev_app, "job.succeeded")
    pub(ev_app, "src", "saved", b"1")
    done.wait(lambda evs: len(evs) == 1)
    job = ev_app.jobs.get(done.events[0].job_id)
    assert job is not None and job.source == "event:plugin.src.saved" and job.plugin == "dur"
    assert seen(ev_app, "dur") == 1


def test_host_events_can_be_subscribed(ev_app: OmniApp) -> None:
    ev_app.plugins.load(events_wasm("watcher", [{"topic": "plugin.loaded",
                                                 "handler": "on_event"}]), grants=GRANTS)
    ev_app.plugins.load(events_wasm("newcomer"), grants=GRANTS)
    assert ev_app.subscriptions.drain(30)
    body = json.loads(ev_app.kv.for_plugin("watcher").get("last") or b"")
    assert body["topic"] == "plugin.loaded" and body["data"]["plugin"] == "newcomer"


def test_subscriptions_need_the_events_grant(ev_app: OmniApp) -> None:
    ev_app.plugins.load(events_wasm("src"), grants=GRANTS)
    ev_app.plugins.load(events_wasm("nogrant", [{"topic": "plugin.src.*",
                                                 "handler": "on_event"}]), grants=["kv"])
    assert not [s for s in ev_app.subscriptions.all() if s.plugin == "nogrant"]


@pytest.mark.parametrize(("subscription", "reason"), [
    ({"topic": "plugin.*.x"}, r"manifest subscriptions\[0\]: a subscription is an object"),
    ({"topic": "plugin.*.x", "handler": "nope"}, r"subscriptions\[0\]: no handler 'nope'"),
    ({"topic": "plugin.*.x", "handler": "on_event", "durabel": True}, r"unknown key\(s\) durabel"),
])
def test_a_bad_subscription_in_the_manifest_fails_the_plugin_at_load(
        ev_app: OmniApp, subscription: dict[str, Any], reason: str) -> None:
    with pytest.raises(PluginLoadError, match=reason):
        ev_app.plugins.load(events_wasm("bad", [subscription]), grants=GRANTS)
    assert "bad" not in ev_app.plugins
    assert not ev_app.subscriptions.all()


def test_a_plugin_publishing_in_a_loop_is_bounded_per_second(
        make_app: Callable[..., OmniApp]) -> None:
    app = make_app(builtin_extensions=None, overrides={
        "sandbox": {"watch": False},
        "capabilities": {"events": {"max_publish_per_s": 20}}})
    app.start()
    try:
        app.plugins.load(events_wasm("loud"), grants=GRANTS)
        app.plugins.load(events_wasm("quiet"), grants=GRANTS)
        statuses = [pub(app, "loud", "spam") for _ in range(200)]
        admitted = statuses.count(0)
        assert 20 <= admitted < 60 and set(statuses) == {0, Status.QUOTA}  # the burst, then refused
        logged = [e for e in app.storage.events.recent(1000) if e.topic == "plugin.loud.spam"]
        assert len(logged) == admitted  # a refused publish writes nothing
        assert pub(app, "quiet", "hello") == 0  # another plugin's budget is its own
        assert app.subscriptions.rate_drops["loud"] == 200 - admitted
        time.sleep(0.3)
        assert pub(app, "loud", "again") == 0  # the budget refills
    finally:
        app.stop(grace=1)


def test_a_publish_rate_that_is_not_positive_is_refused(make_app: Callable[..., OmniApp]) -> None:
    with pytest.raises(ConfigError, match="max_publish_per_s"):
        make_app(builtin_extensions=None, overrides={
            "capabilities": {"events": {"max_publish_per_s": 0}}}).start()


def _two(ev_app: OmniApp) -> Any:
    ev_app.plugins.load(events_wasm("src"), grants=GRANTS)
    ev_app.plugins.load(events_wasm("sink", [{"topic": "plugin.src.*", "handler": "on_event",
                                              "durable": True}]), grants=GRANTS)
    (sub,) = [s for s in ev_app.subscriptions.all() if s.plugin == "sink"]
    return sub


def _spooled(ev_app: OmniApp) -> list[Any]:
    """The records of the host's event spool file."""
    from omnicore.core import spool

    found = list((ev_app.data_dir / "spool").glob("events-*.spool"))
    out = []
    for path in found:
        fd = os.open(path, os.O_RDONLY)
        try:
            out += list(spool._records(fd))
        finally:
            os.close(fd)
    return out


def test_a_publish_the_database_cannot_take_is_spooled_and_logged_with_its_deliveries_later(
        ev_app: OmniApp, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # The event and its durable deliveries commit in one transaction; when the database is
    # away the publish is written to the spool (fsynced) and the plugin told it was taken.
    from omnicore.storage import StorageError

    caplog.set_level(logging.INFO, logger="omnicore.subscriptions")
    sub = _two(ev_app)
    events = ev_app.storage.events
    append = events.append_with_jobs
    refused: list[str] = []

    def away(*args: Any, **kwargs: Any) -> Any:
        refused.append(args[0])
        raise StorageError("storage test.db: unreachable")

    monkeypatch.setattr(events, "append_with_jobs", away)
    assert pub(ev_app, "src", "a") == 0 and pub(ev_app, "src", "b") == 0
    assert [r["topic"] for r in _spooled(ev_app)] == ["plugin.src.a", "plugin.src.b"]
    eventually(lambda: refused.count("plugin.src.a") >= 2, "the held publishes tried again")
    assert sub.dropped == 0 and seen(ev_app, "sink") == 0 and ev_app.subscriptions.held == 2
    # While the spool holds anything, a publish joins it (in order), the database up or not.
    monkeypatch.setattr(events, "append_with_jobs", append)
    assert pub(ev_app, "src", "c") == 0
    eventually(lambda: seen(ev_app, "sink") == 3, "every durable delivery after the outage")
    assert sub.dropped == 0 and ev_app.subscriptions.held == 0
    jobs = sorted(json.loads(j.payload)["topic"] for j in ev_app.jobs.list(plugin="sink"))
    assert jobs == ["plugin.src.a", "plugin.src.b", "plugin.src.c"]  # each queued once
    assert sorted(r.topic for r in events.recent(5)) == jobs  # each logged once
    assert _spooled(ev_app) == []  # drained: emptied
    lines = [(r.levelno, r.getMessage()) for r in caplog.records
             if r.name == "omnicore.subscriptions"]
    assert lines[0] == (logging.ERROR, "event subscriptions paused: storage test.db: "
                        "unreachable; retrying in the background")
    assert lines[1][1].startswith("event subscriptions resumed") and len(lines) == 2, lines


def test_a_replayed_publish_whose_commit_was_lost_is_logged_and_queued_once(
        ev_app: OmniApp) -> None:
    # The commit's answer lost (the connection dropped as it committed): the publish was
    # logged and also spooled. The replay finds its origin and writes nothing.
    _two(ev_app)
    subs = ev_app.subscriptions
    first = subs._log("plugin.src.x", "src", b"1", 1, [("sink", "on_event")], "o-1")
    again = subs._apply({"k": "event", "origin": "o-1", "topic": "plugin.src.x",
                         "plugin": "src", "data": "MQ==", "hops": 1,
                         "to": [["sink", "on_event"]]})
    assert again and [r.id for r in ev_app.storage.events.recent(5)] == [first]
    eventually(lambda: seen(ev_app, "sink") == 1, "the one delivery")
    assert len(ev_app.jobs.list(plugin="sink")) == 1


def test_a_plugin_filling_its_share_of_the_hold_is_refused_and_its_neighbours_are_not(
        make_app: Callable[..., OmniApp], monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from omnicore.storage import StorageError

    app = make_app(builtin_extensions=None, overrides={
        "sandbox": {"watch": False},
        "capabilities": {"events": {"held_bytes_per_plugin": 4500, "held_bytes": 100_000},
                         "tasks": {"poll_s": 0.2, "backoff_ms": 20}}})
    app.start()
    try:
        app.plugins.load(events_wasm("noisy"), grants=GRANTS)
        app.plugins.load(events_wasm("quiet"), grants=GRANTS)
        app.plugins.load(events_wasm("sink", [{"topic": "plugin.*.*", "handler": "on_event",
                                               "durable": True}]), grants=GRANTS)

        def away(*args: Any, **kwargs: Any) -> Any:
            raise StorageError("storage test.db: unreachable")

        events = app.storage.events
        append = events.append_with_jobs
        monkeypatch.setattr(events, "append_with_jobs", away)
        payload = b'"' + b"x" * 500 + b'"'
        statuses = [pub(app, "noisy", f"n{i}", payload) for i in range(6)]
        # Each costs its JSON (about 840 bytes: the 502 in base64, the names) and 512: 3 fit
        # in 4500 bytes; the rest are refused with QUOTA, never UNAVAILABLE.
        assert statuses == [0, 0, 0, Status.QUOTA, Status.QUOTA, Status.QUOTA], statuses
        assert app.subscriptions.held_drops["noisy"] == 3
        assert any("'noisy': 1 publish(es) refused" in r.getMessage() and
                   "held_bytes_per_plugin" in r.getMessage() for r in caplog.records)
        # Its neighbour's publishes are taken, though noisy's share is full.
        assert [pub(app, "quiet", f"q{i}", payload) for i in range(3)] == [0, 0, 0]
        sample = app.metrics.registry.get_sample_value
        assert sample("omnicore_events_held_refused_total", {"plugin": "noisy"}) == 3
        assert sample("omnicore_events_held", {"plugin": "noisy"}) == 3
        assert sample("omnicore_events_held", {"plugin": "quiet"}) == 3
        assert 3 * 1300 < (sample("omnicore_events_held_bytes", {"plugin": "noisy"}) or 0) \
            <= 4500
        monkeypatch.setattr(events, "append_with_jobs", append)
        eventually(lambda: seen(app, "sink") == 6, "the held publishes delivered")
        assert sample("omnicore_events_held", {"plugin": "noisy"}) is None  # drained
        topics = sorted(json.loads(j.payload)["topic"] for j in app.jobs.list(plugin="sink"))
        assert topics == [f"plugin.noisy.n{i}" for i in range(3)] + \
            [f"plugin.quiet.q{i}" for i in range(3)]
        # Drained, the share is free again.
        assert pub(app, "noisy", "n9", payload) == 0
    finally:
        app.stop(grace=1)


def test_empty_publishes_are_charged_what_they_cost_not_their_length(
        make_app: Callable[..., OmniApp], monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty event costs the spool's file about 140 bytes and memory about 470: a share is
    counted in that, not in the payload's length (a 4 MiB share held 420,000 of them, about
    200 MB of memory, when a publish was charged its topic and data: 10 bytes)."""
    from omnicore.storage import StorageError
    from omnicore.subscriptions.service import RECORD_COST

    share = 64 * 1024
    app = make_app(builtin_extensions=None, overrides={
        "sandbox": {"watch": False},
        "capabilities": {"events": {"held_bytes_per_plugin": share, "held_bytes": 1 << 26,
                                    "max_publish_per_s": 100_000}}})
    app.start()
    try:
        app.plugins.load(events_wasm("noisy"), grants=GRANTS)

        def away(*args: Any, **kwargs: Any) -> Any:
            raise StorageError("storage test.db: unreachable")

        monkeypatch.setattr(app.storage.events, "append_with_jobs", away)
        taken = 0
        for _ in range(share // 10):  # what the old charge of about 10 bytes each let in
            status = pub(app, "noisy", "e", b"")
            if status == Status.QUOTA:
                break
            assert status == 0, status
            taken += 1
        # At most the share over what each costs in memory beyond its JSON, at least a few.
        assert 10 <= taken <= share // RECORD_COST, taken
        assert app.subscriptions.held_drops["noisy"] == 1
        held = app.metrics.registry.get_sample_value("omnicore_events_held_bytes",
                                                     {"plugin": "noisy"})
        assert held is not None and share - 1024 < held <= share
    finally:
        app.stop(grace=1)


def test_a_host_event_delivery_the_queue_refuses_is_spooled_under_a_key(
        ev_app: OmniApp, monkeypatch: pytest.MonkeyPatch) -> None:
    from omnicore.storage import StorageError

    ev_app.plugins.load(events_wasm("sink", [{"topic": "job.dead", "handler": "on_event",
                                              "durable": True}]), grants=GRANTS)
    tried: list[str] = []

    def away(*args: Any, **kwargs: Any) -> int:
        tried.append(args[1])
        raise StorageError("storage test.db: unreachable")

    monkeypatch.setattr(ev_app.jobs, "enqueue", away)
    monkeypatch.setattr(ev_app.jobs, "enqueue_once", away)
    from omnicore.jobs.events import JobDead

    ev_app.events.publish(JobDead(job_id=1, plugin="x", handler="y", attempt=1, error="e"))
    (record,) = _spooled(ev_app)
    assert record["k"] == "delivery" and record["key"].startswith("omnicore:event:host:")
    monkeypatch.undo()
    eventually(lambda: seen(ev_app, "sink") == 1, "the spooled host event delivered")
    assert _spooled(ev_app) == []


def test_a_stop_keeps_what_is_held_and_the_next_start_queues_it_once(
        ev_app: OmniApp, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from omnicore.storage import StorageError

    _two(ev_app)
    events = ev_app.storage.events
    append = events.append_with_jobs

    def away(*args: Any, **kwargs: Any) -> Any:
        raise StorageError("storage test.db: unreachable")

    monkeypatch.setattr(events, "append_with_jobs", away)
    assert [pub(ev_app, "src", t) for t in "abc"] == [0, 0, 0]
    ev_app.subscriptions.stop()  # as the app's stop does
    assert any("3 event publish(es) and durable deliveries held through the outage stay in"
               in r.getMessage() for r in caplog.records)
    assert len(_spooled(ev_app)) == 3  # kept on disk, not lost
    monkeypatch.setattr(events, "append_with_jobs", append)
    ev_app.subscriptions.start()  # the next start adopts and drains it
    eventually(lambda: seen(ev_app, "sink") == 3, "the held publishes after the restart")
    assert len(ev_app.jobs.list(plugin="sink")) == 3 and _spooled(ev_app) == []
