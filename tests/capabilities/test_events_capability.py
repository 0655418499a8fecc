"""omnicore:events (specs/abi.md §4.8) and app.subscriptions: off-path delivery, bounded
inboxes, durable subscriptions, no self-trigger, a hop limit against cycles.

The guest is a WAT plugin: ``pub`` publishes what its input says, ``on_event`` counts in kv
and keeps the last body it got, ``relay`` publishes ``ping`` on every event it receives,
``stall`` spins until its deadline.
"""

from __future__ import annotations

import json
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import wasmtime

from omnicore.app import OmniApp
from omnicore.capabilities.events import PluginEvent
from omnicore.errors import ConfigError, PluginLoadError
from omnicore.sandbox import wasmbin
from omnicore.sandbox.capability import Status

EVENTS_WAT = r"""
(module
  (import "omnicore:events" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (import "omnicore:kv" "incr" (func $incr (param i32 i32 i64 i32) (result i32)))
  (import "omnicore:kv" "set" (func $set (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 16)
  (global $bump (mut i32) (i32.const 0x40000))
  (data (i32.const 0x100) "ping")
  (data (i32.const 0x110) "seen")
  (data (i32.const 0x120) "last")
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.and (i32.add (i32.add (global.get $bump) (local.get $n))
                                        (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  ;; input: topic_len u32 | topic | payload -> output: the i32 status
  (func (export "pub") (param $p i32) (param $n i32) (result i64)
    (local $t i32)
    (local.set $t (i32.load (local.get $p)))
    (i32.store (i32.const 0x20000)
      (call $publish (i32.add (local.get $p) (i32.const 4)) (local.get $t)
                     (i32.add (i32.add (local.get $p) (i32.const 4)) (local.get $t))
                     (i32.sub (i32.sub (local.get $n) (i32.const 4)) (local.get $t))))
    (i64.or (i64.shl (i64.const 0x20000) (i64.const 32)) (i64.const 4)))
  (func (export "on_event") (param $p i32) (param $n i32) (result i64)
    (drop (call $incr (i32.const 0x110) (i32.const 4) (i64.const 1) (i32.const 0x20000)))
    (drop (call $set (i32.const 0x120) (i32.const 4) (local.get $p) (local.get $n)))
    (i64.const 0))
  (func (export "relay") (param $p i32) (param $n i32) (result i64)
    (drop (call $incr (i32.const 0x110) (i32.const 4) (i64.const 1) (i32.const 0x20000)))
    (drop (call $publish (i32.const 0x100) (i32.const 4) (i32.const 0) (i32.const 0)))
    (i64.const 0))
  (func (export "stall") (param $p i32) (param $n i32) (result i64)
    (loop $spin (br $spin))
    (i64.const 0))
)
"""


def events_wasm(name: str, subscriptions: list[dict[str, Any]] | None = None) -> bytes:
    manifest = {"name": name, "subscriptions": subscriptions or []}
    return wasmbin.set_custom_section(wasmtime.wat2wasm(EVENTS_WAT), "omnicore.manifest",
                                      json.dumps(manifest).encode())


def pub(app: OmniApp, plugin: str, topic: str, payload: bytes = b"") -> int:
    t = topic.encode()
    out = app.plugins.call(plugin, "pub", struct.pack("<I", len(t)) + t + payload)
    return int(struct.unpack("<i", out)[0])


def seen(app: OmniApp, plugin: str) -> int:
    return int(app.kv.for_plugin(plugin).get("seen") or 0)


class Calls:
    """Waits, on a condition, until the bus saw enough events of a topic pattern."""

    def __init__(self, app: OmniApp, topic: str) -> None:
        self.events: list[Any] = []
        self._cond = threading.Condition()
        app.events.subscribe(topic, self._on)

    def _on(self, event: Any) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait(self, pred: Callable[[list[Any]], bool], timeout: float = 30.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: pred(self.events), timeout), self.events


@pytest.fixture
def ev_app(make_app: Callable[..., OmniApp]) -> Iterator[OmniApp]:
    app = make_app(builtin_extensions=None, overrides={
        "sandbox": {"watch": False},
        "capabilities": {"events": {"queue_size": 2, "max_hops": 5},
                         "tasks": {"poll_s": 0.2, "backoff_ms": 20}}})
    app.start()
    yield app
    app.stop(grace=1)


GRANTS = ["kv", "events", "tasks"]


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


def test_bad_publishes_get_statuses(ev_app: OmniApp) -> None:
    ev_app.plugins.load(events_wasm("src"), grants={"kv": {}, "events": {"publish": ["ok.*"]}})
    assert pub(ev_app, "src", "") == -3
    assert pub(ev_app, "src", "has space") == -3
    assert pub(ev_app, "src", "x" * 201) == -3
    assert pub(ev_app, "src", "other") == -2                 # not in the grant's patterns
    assert pub(ev_app, "src", "ok.big", b"x" * (64 * 1024 + 1)) == -6
    assert pub(ev_app, "src", "ok.fine") == 0


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
