"""``app.bridges``: every configured bridge run on one event loop thread of its own.

The service starts after the subscriptions and the job queue (inbound messages become durable
deliveries) and is an outbox of the events service (:attr:`Subscriptions.outboxes`): an event
an outbound route names is queued as a durable delivery of the bridge (a job of
``@bridge:<name>``) where the event is stored, in its transaction; each bridge's outbound lane
claims and publishes them (specs/host.md, Bridges). What is still queued when the host stops
waits in the queue for any host running the bridge. A dead job (``job.dead``) that delivered
one of a bridge's event types is that bridge's dead letter (:meth:`Bridge.dead`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any, Protocol

from omnicore.bridges._broker import Broker, Settings
from omnicore.bridges._loop import Bridge, log
from omnicore.config.bridges import BridgeConfig
from omnicore.core._loop import LoopThread
from omnicore.core.events import Event, EventBus, Subscription
from omnicore.jobs.events import JobDead, JobQueued
from omnicore.modules.health import HealthStatus
from omnicore.storage import Storage
from omnicore.subscriptions.events import BridgeEvent
from omnicore.subscriptions.service import Outbound, Outbox
from omnicore.types import HealthChecks

#: How long a host's stop waits for its bridges' lanes to unwind (each closes its
#: connection), beyond the longest confirm_timeout_s (an outbound lane writes its last
#: confirmed job done within it): past it a lane is left behind, logged.
HALT_S = 30.0

__all__ = ["Bridges", "broker_for"]


class _Secrets(Protocol):
    def get(self, name: str) -> bytes | None: ...


class _Jobs(Protocol):
    def get(self, job_id: int) -> Any: ...


class _Outboxes(Protocol):
    """The events service as the bridges use it (``Subscriptions``)."""

    @property
    def outboxes(self) -> list[Outbox]: ...


def broker_for(settings: Settings) -> Broker:
    """A new broker connection of the bridge's kind: one module per kind."""
    if settings.config.kind == "nats":
        from omnicore.bridges.nats import NatsBroker

        return NatsBroker(settings)
    if settings.config.kind == "mqtt":
        from omnicore.bridges.mqtt import MqttBroker

        return MqttBroker(settings)
    if settings.config.kind == "rabbitmq":
        from omnicore.bridges.rabbitmq import RabbitBroker

        return RabbitBroker(settings)
    from omnicore.bridges.redis import RedisBroker

    return RedisBroker(settings)


def _verdict(bridge: Bridge) -> tuple[HealthStatus, str]:
    """A bridge's health, from its state: down is degraded (the host serves on; messages wait
    on the broker or are held), with the reason."""
    if bridge.state == "down":
        return HealthStatus.DEGRADED, bridge.reason or "down"
    return HealthStatus.HEALTHY, f"{bridge.state}, {bridge.held} held"


class Bridges:
    """The bridges of ``bridges.<name>`` (none configured: nothing runs)."""

    def __init__(self, configs: Mapping[str, BridgeConfig], *, events: EventBus,
                 deliver: Callable[[BridgeEvent], int], secrets: Callable[[], _Secrets],
                 consumer: str, app: str = "omnicore",
                 health: HealthChecks | None = None,
                 jobs: Callable[[], _Jobs] | None = None,
                 storage: Callable[[], Storage] | None = None,
                 subscriptions: Callable[[], _Outboxes] | None = None,
                 lease_s: float = 30.0) -> None:
        self._events = events
        self._jobs = jobs
        self._health = health
        self._secrets = secrets
        self._consumer = consumer
        #: Where outbound deliveries are queued (None: no outbound lane runs).
        self._subscriptions = subscriptions
        queue = None if storage is None or subscriptions is None else \
            (lambda: storage().queue)
        self.bridges = {name: Bridge(name, config, self._maker(name, config), deliver, app,
                                     queue, consumer, lease_s)
                        for name, config in configs.items()}
        self._thread: LoopThread | None = None
        self._runs: list[asyncio.Task[None]] = []
        self._bus: Subscription | None = None
        self._outbox: Outbox | None = None

    def _maker(self, name: str, config: BridgeConfig) -> Callable[[], Broker]:
        def make() -> Broker:
            secret = None
            if config.secret is not None:
                raw = self._secrets().get(config.secret)
                if raw is None:
                    raise LookupError(f"secret {config.secret} is not set (omnicore secrets "
                                      f"set {config.secret})")
                secret = raw.decode("utf-8", "replace")
            return broker_for(Settings(name, config, self._consumer, secret))
        return make

    def start(self) -> None:
        if not self.bridges or self._thread is not None:
            return
        self._thread = LoopThread("omnicore-bridges")
        self._runs = self._thread.call(self._spawn())
        if self._health is not None:
            for name, bridge in self.bridges.items():
                self._health.register_check(f"bridge:{name}", partial(_verdict, bridge))
        if self._subscriptions is not None and any(
                b.config.outbound or b.config.dead_letter is not None
                or b.config.plugin_publish for b in self.bridges.values()):
            self._outbox = self._outboxed
            self._subscriptions().outboxes.append(self._outbox)
            self._bus = self._events.subscribe(JobQueued.topic, self._queued)
        log.info("bridges started: %s", ", ".join(
            f"{n} ({b.config.kind})" for n, b in self.bridges.items()))

    async def _spawn(self) -> list[asyncio.Task[None]]:
        return [asyncio.create_task(b.run(), name=f"bridge {n}")
                for n, b in self.bridges.items()]

    @staticmethod
    async def _halt(runs: list[asyncio.Task[None]], timeout: float) -> None:
        # Each lane closes its own connection as it unwinds, before the loop goes away; a
        # bridge that does not (a client stuck in its own code) is left behind with a warning
        # rather than holding the host's stop.
        for run in runs:
            run.cancel()
        if runs:
            _, stuck = await asyncio.wait(runs, timeout=timeout)
            for run in stuck:
                log.warning("bridges: %s did not stop within %.0f s; left behind",
                            run.get_name(), timeout)

    def _queued(self, event: Event) -> None:
        plugin = str(getattr(event, "plugin", ""))
        if plugin.startswith("@bridge:"):
            bridge = self.bridges.get(plugin.removeprefix("@bridge:"))
            if bridge is not None:
                bridge.wake()

    def _outboxed(self, event: Event) -> list[Outbound]:
        """``event``'s outbound deliveries on every bridge (the events service's outbox)."""
        if str(getattr(event, "plugin", "")).startswith("@bridge:"):
            return []  # the job events of the bridges' own deliveries: never sent out
        outs = self._dead(event) if isinstance(event, JobDead) else []
        for bridge in self.bridges.values():
            outs += bridge.outbound(event)
        return outs

    def _dead(self, event: JobDead) -> list[Outbound]:
        """A job died: if it delivered an event type a bridge with a dead_letter makes, that
        bridge's dead letter."""
        if self._jobs is None:
            return []
        owners = [b for b in self.bridges.values() if b.config.dead_letter is not None]
        if not owners:
            return []
        try:
            job = self._jobs().get(event.job_id)
        except Exception as exc:  # the storage is out: the dead job stays listed
            log.warning("bridges: dead job %d not read for its dead letter: %s",
                        event.job_id, exc)
            return []
        source = getattr(job, "source", "")
        if job is None or not source.startswith("event:"):
            return []
        topic = source.removeprefix("event:")
        return [o for bridge in owners if topic in bridge.makes for o in bridge.dead(job)]

    def stop(self) -> None:
        if self._bus is not None:
            self._events.unsubscribe(self._bus)
            self._bus = None
        outbox, self._outbox = self._outbox, None
        if outbox is not None and self._subscriptions is not None:
            try:
                self._subscriptions().outboxes.remove(outbox)
            except ValueError:
                pass
        thread, self._thread = self._thread, None
        if thread is None:
            return
        if self._health is not None:
            for name in self.bridges:
                self._health.unregister_check(f"bridge:{name}")
        thread.call(self._halt(self._runs, HALT_S + max(
            (b.config.confirm_timeout_s for b in self.bridges.values()), default=0.0)))
        thread.close()
        self._runs = []
        for bridge in self.bridges.values():
            held = bridge.count_held(fresh=True)  # the storage away: the last count
            if held:
                log.warning("bridge %s stopped with %d outbound message(s) the broker had not "
                            "confirmed: they wait in the job queue (%s) for the next host "
                            "running the bridge", bridge.name, held, bridge.plugin)

    def status(self) -> list[dict[str, Any]]:
        """Each bridge's state, reason and counters."""
        return [b.status() for b in self.bridges.values()]
