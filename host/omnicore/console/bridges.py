"""Bridges in the console: each broker bridged to the event bus, its state, lag and counters
(specs/host.md, Bridges), never a credential.

API (any signed-in user)::

    GET /api/v1/bridges    every bridge: name, kind, broker host and port, state (up, down,
                           starting, stopped) and the reason it is down, what flows which way,
                           its lag (inbound messages read and not yet settled, outbound ones
                           held for the broker's confirmation, and their bytes) and counters

The Events page shows the same list (``#bridges``); ``omnicore bridges`` prints it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.routing import BaseRoute

from omnicore.console import base

if TYPE_CHECKING:
    from omnicore.app import OmniApp
    from omnicore.config.bridges import BridgeConfig

__all__ = ["COUNTERS", "down", "listing", "routes"]

#: The counters every row carries, in the order the page and the CLI show them.
COUNTERS = ("received", "delivered", "acked", "refused", "dead", "published", "retried",
            "dropped")


def _flows(config: BridgeConfig) -> tuple[list[str], list[str]]:
    """What the bridge reads (``source → event``) and what it publishes (``events → target``)."""
    inbound = [f"{r.subject or r.queue or r.topic or r.stream} → {r.event}"
               for r in config.inbound]
    outbound = [f"{', '.join(r.events)} → {r.subject or r.stream or r.topic or r.exchange or ''}"
                f"{'/' + r.routing_key if r.exchange and r.routing_key else ''}"
                for r in config.outbound]
    if config.plugin_publish:
        outbound.append("plugins' bridge.<name>.<subject> (granted)")
    return inbound, outbound


def listing(app: OmniApp) -> list[dict[str, Any]]:
    """Every configured bridge with its state, lag and counters (none configured: empty)."""
    configs = app.config.bridges
    if not configs:
        return []
    statuses = {s["name"]: s for s in app.bridges.status()}
    rows = []
    for name, config in sorted(configs.items()):
        s = statuses.get(name, {})
        parts = urlsplit(config.url)
        inbound, outbound = _flows(config)
        counters = {k: int(s.get(k, 0)) for k in COUNTERS}
        # Read and neither acknowledged nor refused yet: waiting on the storage or the ack.
        unsettled = max(0, counters["received"] - counters["acked"] - counters["refused"])
        held = int(s.get("held", 0))
        rows.append({
            "name": name, "kind": config.kind, "host": parts.hostname, "port": parts.port,
            "user": parts.username, "tls": parts.scheme in ("tls", "rediss", "mqtts", "amqps"),
            "secret": config.secret, "state": s.get("state", "stopped"),
            "reason": s.get("reason"), "inbound": inbound, "outbound": outbound,
            "lag": {"inbound_unsettled": unsettled, "outbound_held": held},
            "held": held, **counters})
    return rows


def down(app: OmniApp) -> list[str]:
    """``bridge <name> (<kind>) down: <reason>`` for every bridge that is down (``/readyz``)."""
    if not app.config.bridges:
        return []
    return [f"bridge {s['name']} ({s['kind']}) down: {s['reason'] or 'no reason given'}"
            for s in app.bridges.status() if s["state"] == "down"]


def routes() -> list[BaseRoute]:
    return base.api("/bridges", GET=base.lister(listing))
