"""One manifest subscription of one plugin, with its delivery counters, and reading them."""

from __future__ import annotations

import collections
import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omnicore.core.events import Event
from omnicore.core.manifest_entries import handler_entries
from omnicore.errors import ConfigError
from omnicore.subscriptions.events import PluginEvent

__all__ = ["Subscriber", "check_manifest", "manifest_subscriptions", "parse_subscription"]


@dataclass
class Subscriber:
    """One manifest subscription of one plugin, with its delivery counters."""

    plugin: str
    handler: str
    pattern: str
    durable: bool = False
    self_events: bool = False
    delivered: int = 0
    failed: int = 0
    dropped: int = 0
    inbox: collections.deque[tuple[bytes, int]] = field(default_factory=collections.deque)
    busy: bool = False

    def matches(self, event: Event) -> bool:
        if isinstance(event, PluginEvent) and event.plugin == self.plugin \
                and not self.self_events:
            return False
        return self.pattern in ("*", event.topic) or fnmatch.fnmatchcase(event.topic,
                                                                         self.pattern)


def parse_subscription(plugin: str, raw: Any, where: str) -> Subscriber:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("topic"), str) \
            or not isinstance(raw.get("handler"), str):
        raise ConfigError(f"{where}: a subscription is an object like "
                          '{"topic": "plugin.*.order", "handler": "on_order"}', key=where)
    unknown = set(raw) - {"topic", "handler", "durable", "self"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}", key=where)
    return Subscriber(plugin, raw["handler"], raw["topic"], bool(raw.get("durable", False)),
                      bool(raw.get("self", False)))


def manifest_subscriptions(plugin: str, manifest: Mapping[str, Any],
                           handlers: Sequence[str] = ()) -> list[Subscriber]:
    """The subscriptions of ``plugin``'s manifest; ConfigError names the first bad one."""
    return handler_entries(manifest, "subscriptions",
                           lambda item, where: parse_subscription(plugin, item, where),
                           handlers)


def check_manifest(plugin: str, manifest: Mapping[str, Any], handlers: Sequence[str]) -> None:
    """Plugin host hook: a subscription that cannot work fails the load (with the reason)."""
    manifest_subscriptions(plugin, manifest, handlers)
