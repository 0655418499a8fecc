"""Plugin events between hosts sharing one PostgreSQL: two apps in this process, each with a
plugin the other lacks. A plugin that relays every event of the other plugin, on each host,
makes a publish cycle that spans the hosts: ``capabilities.events.max_hops`` cuts it there as
on one host, because the event log keeps each event's hop count."""

from __future__ import annotations

from collections.abc import Callable

from omnicore.app import OmniApp
from tests.event_fixtures import GRANTS, events_wasm, pub, seen
from tests.waiting import eventually

MAX_HOPS = 4


def test_a_publish_cycle_across_hosts_stops_at_max_hops(
        make_app: Callable[..., OmniApp], pg_url: str) -> None:
    apps = []
    for name, other in (("ping", "pong"), ("pong", "ping")):
        app = make_app(name, builtin_extensions=None, overrides={
            "storage": {"url": pg_url}, "sandbox": {"watch": False},
            "capabilities": {"events": {"max_hops": MAX_HOPS}}})
        app.start()
        # Each relays the other's events; ping also publishes the first one (pub).
        app.plugins.load(events_wasm(name, [{"topic": f"plugin.{other}.*",
                                             "handler": "relay"}]), grants=GRANTS)
        apps.append(app)
    ping, pong = apps
    assert pub(ping, "ping", "start") == 0  # hop 1, on the ping host
    # pong relays hop 1 (publishing hop 2, on its host), ping hop 2, pong hop 3 (publishing
    # hop 4), ping hop 4: its event of hop 5 is refused on the ping host.
    eventually(lambda: ping.subscriptions.hop_drops + pong.subscriptions.hop_drops >= 1,
               "the cycle cut at max_hops")
    for app in apps:
        assert app.subscriptions.drain(30)
    assert (seen(ping, "ping"), seen(pong, "pong")) == (2, 2)
    assert ping.subscriptions.hop_drops == 1
    # The log holds each hop once, the refused one not at all.
    hops = sorted(r.hops for r in ping.storage.events.recent(10))
    assert hops == list(range(1, MAX_HOPS + 1)), hops
