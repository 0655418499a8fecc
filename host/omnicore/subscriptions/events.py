"""What a plugin publishes, and the JSON a subscribing handler receives."""

from __future__ import annotations

import base64
import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from omnicore.core import jsoncodec
from omnicore.core.events import Event

__all__ = ["BridgeEvent", "PluginEvent", "event_body"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginEvent(Event):
    """What a plugin published: ``topic`` is ``plugin.<plugin>.<its topic>``."""

    topic: str  # type: ignore[misc]  # per instance, unlike host events
    plugin: str
    data: bytes = field(repr=False)
    hops: int = 1
    #: Its id in the storage's event log (None: not logged): what every host of a shared
    #: database names it by, so a durable delivery is queued once whichever host queues it.
    event_id: int | None = None
    #: This host's durable deliveries of it were stored with it (the event log's
    #: transaction, or the spool through an outage): routing it queues no more of them.
    stored: bool = False
    #: What names the publish for ever, logged or still held in the spool (the event log
    #: has not given it an id yet): the outbound bridges' message id then.
    origin: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class BridgeEvent(Event):
    """A broker's message brought in by a bridge (omnicore.bridges): ``topic`` is the event
    type its inbound route names. Delivered by :meth:`Subscriptions.deliver`, not routed off
    the bus, so its durable deliveries are keyed by the broker's message id."""

    topic: str  # type: ignore[misc]
    bridge: str
    data: bytes = field(repr=False)
    #: The broker's id of the message (``STREAM:SEQ``, a stream entry id): what a redelivery
    #: is known by.
    message_id: str
    hops: int = 1
    #: The attempts of each durable delivery (``bridges.<name>.dead_letter.after``; None: the
    #: job queue's): after them the job is dead, a dead letter of the bridge.
    max_attempts: int | None = None


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def event_body(event: Event) -> bytes:
    """The JSON a subscribing handler receives: ``{"topic", "data"}``.

    A plugin's payload goes in as JSON when it is JSON (NaN and Infinity are not, as for
    every guest's JSON: they would make the body invalid for the handler's parser), else as
    text, else as ``{"base64": ...}``.
    """
    if isinstance(event, PluginEvent | BridgeEvent):
        try:
            data: Any = jsoncodec.loads(event.data, parse_constant=_not_json) \
                if event.data else None
        except ValueError:
            try:
                data = event.data.decode()
            except UnicodeDecodeError:
                data = {"base64": base64.b64encode(event.data).decode()}
    else:
        data = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)
                if f.name not in ("exc",)}
    return json.dumps({"topic": event.topic, "data": data}, default=str,
                      separators=(",", ":")).encode()
