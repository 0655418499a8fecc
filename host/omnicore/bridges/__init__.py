"""Bridges: message brokers feeding and draining the event bus, at least once both ways.

``bridges.<name>`` in the config (omnicore.config.bridges) names a broker and its routes;
``_service`` (:class:`Bridges`, ``app.bridges``) runs them; ``_loop`` (:class:`Bridge`) is the
one at-least-once loop every kind shares; ``_broker`` is the seam a kind implements
(:class:`Broker`); ``_metrics`` puts them in ``/metrics``; ``nats`` (JetStream), ``redis``
(Streams), ``mqtt`` (MQTT 5) and ``rabbitmq`` (AMQP 0-9-1) are the kinds. specs/host.md,
Bridges, states the guarantees; docs/guides/bridges.md shows the config.
"""

from __future__ import annotations

from omnicore.bridges._broker import Broker, Received, Settings
from omnicore.bridges._loop import Bridge, Outgoing
from omnicore.bridges._metrics import BridgeMetrics
from omnicore.bridges._service import Bridges, broker_for

__all__ = ["Bridge", "BridgeMetrics", "Bridges", "Broker", "Outgoing", "Received", "Settings",
           "broker_for"]
