"""``omnicore:events`` (specs/abi.md §4.8): the plugins' door onto ``app.subscriptions``.

``publish(topic, payload)`` checks the topic against the grammar and the grant's ``publish``
patterns, then hands it to :meth:`omnicore.subscriptions.Subscriptions.publish`, which puts
it on the app's event bus as ``plugin.<name>.<topic>`` (a plugin cannot forge host events).
Subscribing is the manifest's (``subscriptions``, checked here when a plugin loads);
delivering is the service's (:mod:`omnicore.subscriptions`).

Topics under ``bridge.`` are a plugin's publishes to a message broker: ``bridge.<bridge>.
<subject>`` is admitted only by the grant's ``bridges`` patterns (``<bridge>:<subject glob>``,
never by ``publish``, whose default ``*`` would otherwise open every broker) and only for a
bridge whose config has ``plugin_publish``; the bridge publishes it (omnicore.bridges).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from typing import Any

from omnicore import telemetry
from omnicore.capabilities import standalone
from omnicore.capabilities.types import AppServices
from omnicore.errors import ConfigError
from omnicore.sandbox import capability as cap
from omnicore.subscriptions import PluginEvent, Refusal, Subscriptions, check_manifest

__all__ = ["CAPABILITY", "MAX_TOPIC_BYTES", "TOPIC", "PluginEvent", "capability",
           "check_manifest", "for_app"]

TOPIC = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
MAX_TOPIC_BYTES = 200

_REFUSED = {Refusal.TOO_LARGE: cap.Status.TOO_LARGE, Refusal.HOPS: cap.Status.QUOTA,
            Refusal.RATE: cap.Status.QUOTA, Refusal.HELD: cap.Status.QUOTA,
            Refusal.UNAVAILABLE: cap.Status.UNAVAILABLE}


#: The topics of a plugin's publishes to a broker: ``bridge.<bridge>.<subject>``.
BRIDGE_PREFIX = "bridge."


class _State:
    __slots__ = ("bridges", "open", "patterns", "plugin", "subs")

    def __init__(self, subs: Subscriptions, plugin: str, patterns: tuple[str, ...],
                 bridges: tuple[tuple[str, str], ...] = (),
                 open_bridges: frozenset[str] = frozenset()) -> None:
        self.subs = subs
        self.plugin = plugin
        self.patterns = patterns
        #: (bridge, subject glob) the grant names; the bridges that take plugins' publishes.
        self.bridges = bridges
        self.open = open_bridges


def _admit(state: _State, topic: str) -> int:
    """0 if the plugin may publish ``topic``, else the Status refusing it."""
    if not 0 < len(topic.encode("utf-8", "surrogatepass")) <= MAX_TOPIC_BYTES or \
            not TOPIC.fullmatch(topic):
        return cap.Status.INVALID
    if topic.startswith(BRIDGE_PREFIX):
        bridge, _, subject = topic[len(BRIDGE_PREFIX):].partition(".")
        if not subject:
            return cap.Status.INVALID
        if bridge not in state.open or not any(
                b == bridge and fnmatch.fnmatchcase(subject, g) for b, g in state.bridges):
            return cap.Status.DENIED
        return 0
    if not any(fnmatch.fnmatchcase(topic, p) for p in state.patterns):
        return cap.Status.DENIED
    return 0


def _send(state: _State, topic: str, size: int, payload: Callable[[], bytes]) -> int:
    if telemetry.ON:  # a producer span: the durable deliveries it queues continue its trace
        with telemetry.span(f"publish {topic}", {
                "messaging.system": "omnicore", "messaging.operation.type": "publish",
                "messaging.destination.name": topic, "messaging.message.body.size": size,
                "omnicore.plugin.name": state.plugin}, kind="producer") as made:
            refused = state.subs.publish(state.plugin, topic, size, payload)
            if refused is not None:
                made.set_attribute("error.type", refused.name)
    else:
        refused = state.subs.publish(state.plugin, topic, size, payload)
    return 0 if refused is None else _REFUSED[refused]


def _publish(state: _State, mem: cap.GuestMemory, tptr: int, tlen: int, pptr: int,
             plen: int) -> int:
    mem.check(tptr, tlen, "event topic")
    mem.check(pptr, plen, "event payload")
    if not 0 < tlen <= MAX_TOPIC_BYTES:
        return cap.Status.INVALID
    topic = mem.read(tptr, tlen, "event topic").decode("utf-8", "replace")
    return _admit(state, topic) or _send(state, topic, plen,
                                         lambda: mem.read(pptr, plen, "event payload"))


def _wit_publish(state: _State, topic: str, payload: bytes) -> dict[str, Any]:
    """``omnicore:plugin/events.publish`` for components."""
    status = _admit(state, topic) or _send(state, topic, len(payload), lambda: payload)
    return cap.Status.wit_error(status) if status else {"ok": None}


_ERROR = cap.WitFunction.ERROR


def _bridges(options: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The grant's ``bridges``: ``<bridge>:<subject glob>`` entries, as (bridge, glob)."""
    raw = options.get("bridges", [])
    if isinstance(raw, str):
        raw = [raw]
    out = []
    for item in raw if isinstance(raw, list) else [None]:
        bridge, _, glob = item.partition(":") if isinstance(item, str) else ("", "", "")
        if not bridge or not glob or "." in bridge or not _BRIDGE_GLOB.fullmatch(glob):
            raise ConfigError("grant.events.bridges must be a list of BRIDGE:SUBJECT "
                              "patterns like orders:invoices.* (the bridge's name, a dotted "
                              "subject glob)", key="grant.events.bridges", value=raw)
        out.append((bridge, glob))
    return tuple(out)


_BRIDGE_GLOB = re.compile(r"[A-Za-z0-9_*?.-]{1,200}")


def _patterns(options: Mapping[str, Any]) -> tuple[str, ...]:
    unknown = set(options) - {"publish", "bridges"}
    if unknown:
        raise ConfigError(f"unknown option(s) for grant 'events': {', '.join(sorted(unknown))}; "
                          "known: publish, bridges", key="grant.events")
    raw = options.get("publish", ["*"])
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list) or not all(isinstance(p, str) and p for p in raw):
        raise ConfigError("grant.events.publish must be a list of topic patterns",
                          key="grant.events.publish", value=raw)
    return tuple(raw)


def _check_grant(options: Mapping[str, Any]) -> None:
    _patterns(options)
    _bridges(options)


def capability(subs_for: Callable[[cap.PluginContext], Subscriptions],
               open_bridges: Callable[[], frozenset[str]] = frozenset) -> cap.Capability:
    def bind(ctx: cap.PluginContext) -> _State:
        return _State(subs_for(ctx), ctx.plugin, _patterns(ctx.grant), _bridges(ctx.grant),
                      open_bridges())

    return cap.Capability(
        name="events",
        description="publish events under plugin.<name>. and receive subscribed ones",
        functions=(cap.HostFunction("publish", ("ptr", "len", "ptr", "len"), ("i32",), _publish),),
        wit=(cap.WitFunction("publish", f"func(topic: string, payload: list<u8>) -> "
                                        f"result<_, {_ERROR}>", _wit_publish),),
        bind=bind,
        check_grant=_check_grant,
        check_manifest=check_manifest,
    )


#: For plugin hosts without an app: granting ``events`` there is a clear error.
CAPABILITY = capability(standalone.needs_app(
    "events", "which need an app's event bus (omnicore run, or OmniApp)", key="grant.events"))


def for_app(app: AppServices) -> cap.Capability:
    """The events capability on ``app.subscriptions`` and the app's bus; the bridges of its
    config that take plugins' publishes (``plugin_publish``)."""
    def open_bridges() -> frozenset[str]:
        bridges = getattr(app.config, "bridges", None) or {}
        return frozenset(name for name, b in bridges.items() if b.plugin_publish)

    return capability(lambda _ctx: app.subscriptions, open_bridges)
