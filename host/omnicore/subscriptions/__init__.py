"""Plugins' event subscriptions: the service behind ``app.subscriptions``.

Plugins subscribe in their manifest (``subscriptions: [{"topic": "plugin.*.order", "handler":
"on_order"}]``, needs the ``events`` grant) to plugin or host events (``plugin.loaded``,
``job.dead``...); the host calls the handler with JSON ``{"topic", "data"}``.

``service`` (:class:`Subscriptions`: routing bus events to handlers, publishing a plugin's
event), ``subscriber`` (one manifest subscription and its counters), ``events``
(:class:`PluginEvent` and the body a handler receives), ``metrics`` (Prometheus). The service
runs whether or not any plugin holds the grant; ``omnicore:events``
(:mod:`omnicore.capabilities.events`) is the plugins' door onto it.
"""

from __future__ import annotations

from omnicore.subscriptions.events import BridgeEvent, PluginEvent, event_body
from omnicore.subscriptions.metrics import SubscriberMetrics
from omnicore.subscriptions.service import (
    DELIVERY_KEYS,
    Refusal,
    Subscriptions,
    SubscriptionsApp,
)
from omnicore.subscriptions.subscriber import (
    Subscriber,
    check_manifest,
    manifest_subscriptions,
    parse_subscription,
)

__all__ = ["DELIVERY_KEYS", "BridgeEvent", "PluginEvent", "Refusal", "Subscriber",
           "SubscriberMetrics", "Subscriptions", "SubscriptionsApp", "check_manifest", "event_body",
           "manifest_subscriptions", "parse_subscription"]
