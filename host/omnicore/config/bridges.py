"""``bridges.<name>.*``: a message broker feeding and draining the event bus (omnicore.bridges).

A bridge is configured like a database connector: a URL without its password, the password
(or token) from the secret store, TLS verified against ``ca_file``. Its ``inbound`` routes turn
broker messages into events of one type, delivered to the plugins subscribed to it; its
``outbound`` routes publish chosen event types to the broker. Checked here at load, with the
key that is wrong in the message; specs/host.md, Bridges, has the guarantees.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator, model_validator

from omnicore.config.strict import Strict

__all__ = ["SCHEMES", "BridgeConfig", "BridgeDeadLetter", "BridgeInbound", "BridgeOutbound"]

#: The URL schemes of each kind (the second one is TLS).
SCHEMES: dict[str, tuple[str, ...]] = {"nats": ("nats", "tls"), "redis": ("redis", "rediss"),
                                        "mqtt": ("mqtt", "mqtts"),
                                        "rabbitmq": ("amqp", "amqps")}
_EVENT = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_PATTERN = re.compile(r"[A-Za-z0-9_*?.-]+")
_SECRET = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_NAME = re.compile(r"[A-Za-z0-9_.>*-]{1,256}")
#: An MQTT topic (filter): levels of letters, digits, '_', '-', '.', with '+' and '#'.
_TOPIC = re.compile(r"[A-Za-z0-9_.+#-]{1,128}(/[A-Za-z0-9_.+#-]{1,128}){0,31}")
#: An AMQP queue or exchange name, and a routing key (a binding's may hold '*' and '#').
_AMQP_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,255}")
_ROUTING_KEY = re.compile(r"[A-Za-z0-9_.:*#-]{0,255}")
_AMQP_WRONG = "{value!r} must be 1-255 letters, digits, '_', '.', ':', '-'"


def _checked(value: str | None, pattern: re.Pattern[str], wrong: str, *,
             no: str = "") -> str | None:
    """``value`` when it is unset, or when ``pattern`` matches it whole and it holds none of
    the characters ``no`` (an outbound target takes no wildcards); else a ValueError saying
    ``wrong`` (a format string of ``value``): every name check of a route, one rule."""
    if value is not None and (not pattern.fullmatch(value) or any(c in value for c in no)):
        raise ValueError(wrong.format(value=value))
    return value


class BridgeInbound(Strict):
    """``bridges.<name>.inbound[]``: where messages are read and the event type they become.
    NATS: ``subject`` (a JetStream stream must capture it; ``stream`` names it, else it is
    looked up by subject). Redis: ``stream``. MQTT: ``topic`` (a filter). RabbitMQ: ``queue``
    (declared durable when missing; bound to ``exchange`` with ``routing_key`` when named).
    ``group`` is the durable consumer (NATS), the consumer group (Redis) or the shared
    subscription (MQTT) every host of a cluster shares, so each message goes to one host (a
    RabbitMQ queue is that already: its consumers share it)."""

    event: str = Field(description="the event type a message becomes (a dotted name, not "
                                   "plugin.*: plugins subscribe to it by this name)")
    subject: str | None = Field(default=None, description="nats: the subject read")
    stream: str | None = Field(default=None, description="redis: the stream read; nats: the "
                                                         "JetStream stream holding the subject")
    topic: str | None = Field(default=None, description="mqtt: the topic filter subscribed "
                                                        "(QoS 1)")
    group: str | None = Field(default=None, description="the durable consumer (nats), "
                                                        "consumer group (redis) or shared "
                                                        "subscription (mqtt) the hosts share "
                                                        "(omnicore-<bridge>)")
    queue: str | None = Field(default=None, description="rabbitmq: the queue consumed "
                                                        "(declared durable when missing)")
    exchange: str | None = Field(default=None, description="rabbitmq: the exchange the queue "
                                                           "is bound to (it must exist)")
    routing_key: str | None = Field(default=None, description="rabbitmq: the binding key of "
                                                              "that binding (# when unset)")

    @field_validator("event")
    @classmethod
    def _event(cls, value: str) -> str:
        if not _EVENT.fullmatch(value) or len(value) > 200:
            raise ValueError(f"event {value!r} must be a dotted name like orders.created")
        if value.startswith("plugin."):
            raise ValueError(f"event {value!r}: plugin.* names what plugins publish; a bridge's "
                             "events need another name (e.g. bridge.orders)")
        return value

    @field_validator("subject", "stream", "group")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return _checked(value, _NAME, "{value!r} must be 1-256 letters, digits, '_', '.', '-', "
                                      "'*', '>'")

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        return _checked(value, _TOPIC, "topic {value!r} must be levels like sensors/+/temp "
                                       "(letters, digits, '_', '.', '-', '+', '#')")

    @field_validator("queue", "exchange")
    @classmethod
    def _amqp_name(cls, value: str | None) -> str | None:
        return _checked(value, _AMQP_NAME, _AMQP_WRONG)

    @field_validator("routing_key")
    @classmethod
    def _binding_key(cls, value: str | None) -> str | None:
        return _checked(value, _ROUTING_KEY, "routing_key {value!r} must be words like "
                                             "orders.*.created (letters, digits, '_', '.', "
                                             "':', '-', '*', '#')")


class BridgeOutbound(Strict):
    """``bridges.<name>.outbound[]``: the events published to the broker, and where to."""

    events: list[str] = Field(min_length=1, description="event types (globs like "
                                                         "plugin.*.order) published")
    subject: str | None = Field(default=None, description="nats: the subject published to (a "
                                                          "JetStream stream must capture it)")
    stream: str | None = Field(default=None, description="redis: the stream XADD appends to")
    topic: str | None = Field(default=None, description="mqtt: the topic published to (QoS 1)")
    max_len: int | None = Field(default=None, gt=0, description="redis: the stream trimmed "
                                                                "to about this many entries")
    exchange: str | None = Field(default=None, description="rabbitmq: the exchange published "
                                                           "to (it must exist; unset: the "
                                                           "default exchange)")
    routing_key: str | None = Field(default=None, description="rabbitmq: the routing key of "
                                                              "every message of the route")

    @field_validator("events")
    @classmethod
    def _patterns(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not _PATTERN.fullmatch(pattern):
                raise ValueError(f"event pattern {pattern!r} must be a dotted name or glob")
        return value

    @field_validator("subject", "stream")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return _checked(value, _NAME, "{value!r} must be 1-256 letters, digits, '_', '.', '-'",
                        no="*>")

    @field_validator("topic")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        return _checked(value, _TOPIC, "topic {value!r} must be levels like events/orders "
                                       "(letters, digits, '_', '.', '-'; no wildcard)", no="+#")

    @field_validator("exchange")
    @classmethod
    def _amqp_name(cls, value: str | None) -> str | None:
        return _checked(value, _AMQP_NAME, _AMQP_WRONG)

    @field_validator("routing_key")
    @classmethod
    def _routing_key(cls, value: str | None) -> str | None:
        return _checked(value, _ROUTING_KEY, "routing_key {value!r} must be words like "
                                             "orders.created (letters, digits, '_', '.', "
                                             "':', '-'; no wildcard)", no="*#")


class BridgeDeadLetter(Strict):
    """``bridges.<name>.dead_letter``: where the bridge's poison messages go. A message is a
    dead letter when it is refused on arrival (over ``max_message_bytes``, undeliverable) or
    when a plugin's durable delivery of it failed ``after`` times (the job is ``dead``: listed
    and retried with ``omnicore jobs list --state dead`` / ``omnicore jobs retry``). With a
    target it is also published there, with its reason: a RabbitMQ ``exchange`` (the inbound
    queues' ``x-dead-letter-exchange``: what the host rejects goes there through the broker's
    own dead-lettering), a NATS ``subject``, a Redis ``stream``, an MQTT ``topic``."""

    after: int | None = Field(default=None, ge=1, le=1000,
                              description="attempts of a plugin's durable delivery of an "
                                          "inbound message before it is a dead letter "
                                          "(capabilities.jobs.max_attempts when unset)")
    exchange: str | None = Field(default=None, description="rabbitmq: the dead-letter "
                                                           "exchange (it must exist)")
    routing_key: str | None = Field(default=None, description="rabbitmq: the routing key of "
                                                              "dead letters (unset: the "
                                                              "message's own; the event type "
                                                              "for a failed delivery)")
    subject: str | None = Field(default=None, description="nats: the subject dead letters are "
                                                          "published to (a stream must "
                                                          "capture it)")
    stream: str | None = Field(default=None, description="redis: the stream dead letters are "
                                                         "appended to")
    topic: str | None = Field(default=None, description="mqtt: the topic dead letters are "
                                                        "published to (QoS 1)")

    @field_validator("exchange", "routing_key", "subject", "stream", "topic")
    @classmethod
    def _target(cls, value: str | None, info: ValidationInfo) -> str | None:
        # The names an outbound route's target takes (no wildcards).
        if value is not None:
            BridgeOutbound.model_validate({"events": ["x"], str(info.field_name): value})
        return value

    @property
    def target(self) -> bool:
        """Whether dead letters are published somewhere (else they stay in the host's jobs)."""
        return any(v is not None for v in (self.exchange, self.subject, self.stream,
                                           self.topic))


class BridgeConfig(Strict):
    """``bridges.<name>.*``: a message broker (NATS JetStream, Redis Streams, MQTT 5, RabbitMQ)
    bridged to the event bus at least once both ways (specs/host.md, Bridges;
    docs/guides/bridges.md)."""

    kind: Literal["nats", "redis", "mqtt", "rabbitmq"] = Field(
        description="nats (JetStream), redis (Streams), mqtt (MQTT 5) or rabbitmq (AMQP 0-9-1)")
    url: str = Field(min_length=1, description="the broker's URL without a password: "
                                               "nats://, tls:// (nats); redis://, rediss:// "
                                               "(redis); mqtt://, mqtts:// (mqtt); amqp://, "
                                               "amqps:// with the virtual host as its path "
                                               "(rabbitmq)")
    secret: str | None = Field(default=None, description="the secret holding the password "
                                                         "(with a user in the URL) or token")
    ca_file: Path | None = Field(default=None, description="CA certificates the broker's TLS "
                                                           "certificate is verified against")
    inbound: list[BridgeInbound] = Field(default_factory=list,
                                         description="broker → events (see its keys)")
    outbound: list[BridgeOutbound] = Field(default_factory=list,
                                           description="events → broker (see its keys)")
    batch: int = Field(default=64, gt=0, le=10_000, description="messages read per fetch")
    max_message_bytes: int = Field(default=1024 * 1024, gt=0,
                                   description="larger inbound messages are refused (logged, "
                                               "acknowledged, counted)")
    redeliver_after_s: float = Field(default=30.0, gt=0,
                                     description="an unacknowledged inbound message goes to "
                                                 "another consumer after this (nats ack wait; "
                                                 "redis XAUTOCLAIM idle; rabbitmq: when the "
                                                 "consumer's connection closes)")
    client_id: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$",
        description="mqtt: this host's client id, stable across its restarts so its session "
                    "(and the messages it did not acknowledge) survives them; unique per host "
                    "(omnicore-<bridge>-<machine name>)")
    plugin_publish: bool = Field(
        default=False, description="plugins publish to this bridge directly: the topic "
                                   "bridge.<name>.<subject> of omnicore:events, for a plugin "
                                   "whose events grant names <name>:<subject pattern> under "
                                   "bridges")
    plugin_exchange: str | None = Field(
        default=None, description="rabbitmq: the exchange plugins' publishes go to, the "
                                  "subject as routing key (amq.topic)")
    dead_letter: BridgeDeadLetter | None = Field(
        default=None, description="poison messages: after how many failed deliveries, and "
                                  "where they are published (see its keys)")
    confirm_timeout_s: float = Field(default=5.0, gt=0,
                                     description="a publish unconfirmed for this long is sent "
                                                 "again (same message id)")

    @field_validator("secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return _checked(value, _SECRET, "bad secret name {value!r}: use 1-128 letters, digits, "
                                        "'_', '.', '-'")

    @model_validator(mode="after")
    def _consistent(self) -> BridgeConfig:
        parts = urlsplit(self.url)
        if parts.scheme not in SCHEMES[self.kind] or not parts.hostname:
            raise ValueError(f"url must be {' or '.join(s + '://' for s in SCHEMES[self.kind])}"
                             f"HOST:PORT for a {self.kind} bridge, got {self.url!r}")
        if parts.password is not None:
            raise ValueError("url must not carry a password: put it in a secret (secret)")
        if self.ca_file is not None and parts.scheme == SCHEMES[self.kind][0]:
            raise ValueError(f"ca_file needs a TLS url ({SCHEMES[self.kind][1]}://)")
        if not self.inbound and not self.outbound and not self.plugin_publish:
            raise ValueError("a bridge needs inbound or outbound routes (or plugin_publish)")
        for i, route in enumerate(self.inbound):
            where = f"inbound[{i}]"
            if self.kind == "nats" and (route.subject is None or route.topic is not None):
                raise ValueError(f"{where}: a nats route reads a subject (subject)")
            if self.kind == "redis" and (route.stream is None or route.subject is not None
                                         or route.topic is not None):
                raise ValueError(f"{where}: a redis route reads a stream (stream, no subject)")
            if self.kind == "mqtt" and (route.topic is None or route.subject is not None
                                        or route.stream is not None):
                raise ValueError(f"{where}: an mqtt route subscribes to a topic filter (topic)")
            amqp = (route.queue, route.exchange, route.routing_key)
            if self.kind == "rabbitmq":
                if route.queue is None or route.subject is not None or route.stream is not None \
                        or route.topic is not None:
                    raise ValueError(f"{where}: a rabbitmq route consumes a queue (queue)")
                if route.group is not None:
                    raise ValueError(f"{where}: a rabbitmq queue is shared by every host's "
                                     "consumer already: no group")
                if route.routing_key is not None and route.exchange is None:
                    raise ValueError(f"{where}: routing_key binds the queue to an exchange "
                                     "(exchange)")
            elif any(v is not None for v in amqp):
                raise ValueError(f"{where}: queue, exchange and routing_key are for rabbitmq "
                                 "bridges")
        for i, out in enumerate(self.outbound):
            where = f"outbound[{i}]"
            if self.kind == "nats" and (out.subject is None or out.stream is not None
                                        or out.max_len is not None or out.topic is not None):
                raise ValueError(f"{where}: a nats route publishes to a subject (subject)")
            if self.kind == "redis" and (out.stream is None or out.subject is not None
                                         or out.topic is not None):
                raise ValueError(f"{where}: a redis route appends to a stream (stream)")
            if self.kind == "mqtt" and (out.topic is None or out.subject is not None
                                        or out.stream is not None or out.max_len is not None):
                raise ValueError(f"{where}: an mqtt route publishes to a topic (topic)")
            if self.kind == "rabbitmq":
                if out.routing_key is None or out.subject is not None \
                        or out.stream is not None or out.topic is not None \
                        or out.max_len is not None:
                    raise ValueError(f"{where}: a rabbitmq route publishes to an exchange "
                                     "with a routing key (exchange, routing_key)")
            elif out.exchange is not None or out.routing_key is not None:
                raise ValueError(f"{where}: exchange and routing_key are for rabbitmq bridges")
        dead = self.dead_letter
        if dead is not None:
            given = {k for k in ("exchange", "routing_key", "subject", "stream", "topic")
                     if getattr(dead, k) is not None}
            allowed = {"rabbitmq": {"exchange", "routing_key"}, "nats": {"subject"},
                       "redis": {"stream"}, "mqtt": {"topic"}}[self.kind]
            if given - allowed:
                raise ValueError(f"dead_letter: a {self.kind} bridge's dead letters go to "
                                 f"{' and '.join(sorted(allowed))}, not "
                                 f"{', '.join(sorted(given - allowed))}")
            if dead.routing_key is not None and dead.exchange is None:
                raise ValueError("dead_letter.routing_key needs dead_letter.exchange")
        if self.plugin_exchange is not None:
            if self.kind != "rabbitmq":
                raise ValueError("plugin_exchange is for rabbitmq bridges only")
            BridgeOutbound.model_validate({"events": ["x"], "exchange": self.plugin_exchange})
        if self.client_id is not None and self.kind != "mqtt":
            raise ValueError("client_id is for mqtt bridges only")
        return self

    def describe(self) -> dict[str, Any]:
        """What the console and the CLI may show (never a secret's value)."""
        return {"kind": self.kind, "url": self.url, "secret": self.secret,
                "inbound": [r.model_dump(exclude_none=True) for r in self.inbound],
                "outbound": [r.model_dump(exclude_none=True) for r in self.outbound]}
