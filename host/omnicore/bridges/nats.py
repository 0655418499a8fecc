"""NATS JetStream (nats-py, the ``bridges`` extra): inbound through a durable pull consumer,
outbound through JetStream publishes confirmed by their PubAck.

Inbound reads ``subject`` through the durable consumer ``group`` (created with explicit
acks and ``redeliver_after_s`` as its ack wait when missing); every host binds the same
consumer, so each message goes to one host, and one the host did not acknowledge within the
ack wait is delivered again. A message's id is ``STREAM:SEQUENCE``. The ack is a confirmed one
(``ack_sync``): the loop counts a message acknowledged only once the server said so.

Outbound publishes carry ``Nats-Msg-Id``: a retry within the stream's duplicate window is
stored once (the PubAck says ``duplicate``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omnicore.bridges._broker import Received, Settings
from omnicore.config.bridges import BridgeInbound, BridgeOutbound

__all__ = ["NatsBroker"]

#: The header naming the event type of an outbound message.
EVENT_HEADER = "Omnicore-Event"


async def _quiet(*_: Any) -> None:
    """nats-py logs every connection error itself: the loop reports them once."""


class NatsBroker:
    """One NATS connection of a bridge (:class:`omnicore.bridges.Broker`)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._nc: Any = None
        self._js: Any = None
        self._subs: dict[int, Any] = {}

    async def connect(self, lane: str) -> None:
        import nats

        s = self._settings
        auth: dict[str, Any] = {}
        if s.user is not None:
            auth = {"user": s.user, "password": s.secret or ""}
        elif s.secret is not None:
            auth = {"token": s.secret}
        url = s.config.url
        if s.user is not None:  # the user goes as an option, not inside the URL
            head, _, rest = url.partition("://")
            url = f"{head}://{rest.rpartition('@')[2]}"
        # max_reconnect_attempts: nats-py retries a first connect that many times (60 by
        # default, about two minutes) even without allow_reconnect; the bridge's own lane
        # retries with backoff and reports the broker down at once.
        self._nc = await nats.connect(
            servers=[url], allow_reconnect=False, max_reconnect_attempts=1, connect_timeout=int(
                max(1, s.timeout)), tls=s.tls(), error_cb=_quiet,
            disconnected_cb=_quiet, closed_cb=_quiet, name=f"omnicore-{s.name}", **auth)
        self._js = self._nc.jetstream(timeout=s.timeout)

    async def close(self) -> None:
        nc, self._nc, self._subs = self._nc, None, {}
        if nc is not None:
            try:
                await nc.close()
            except Exception:  # closing a broken connection: nothing to do
                pass

    async def _sub(self, route: BridgeInbound) -> Any:
        sub = self._subs.get(id(route))
        if sub is None:
            from nats.js.api import AckPolicy, ConsumerConfig

            s = self._settings
            durable = s.group(route)
            config = ConsumerConfig(durable_name=durable, ack_policy=AckPolicy.EXPLICIT,
                                    ack_wait=s.config.redeliver_after_s,
                                    filter_subject=route.subject)
            sub = self._subs[id(route)] = await self._js.pull_subscribe(
                str(route.subject), durable=durable, stream=route.stream, config=config)
        return sub

    async def fetch(self, route: BridgeInbound, limit: int, wait_s: float) -> list[Received]:
        import nats.errors

        sub = await self._sub(route)
        if self._nc is None or not self._nc.is_connected:
            raise ConnectionError("the connection to the NATS server closed")
        try:
            msgs = await sub.fetch(limit, timeout=wait_s)
        except nats.errors.TimeoutError:
            if self._nc is None or not self._nc.is_connected:
                raise ConnectionError("the connection to the NATS server closed") from None
            return []
        out = []
        for m in msgs:
            md = m.metadata
            out.append(Received(f"{md.stream}:{md.sequence.stream}", m.data, m))
        return out

    async def ack(self, route: BridgeInbound, message: Received) -> None:
        await message.token.ack_sync(timeout=self._settings.timeout)

    async def publish(self, route: BridgeOutbound, message_id: str, event: str,
                      data: bytes, headers: Mapping[str, str] | None = None) -> str:
        ack = await self._js.publish(str(route.subject), data, headers={
            **(headers or {}), "Nats-Msg-Id": message_id, EVENT_HEADER: event})
        return f"{ack.stream}:{ack.seq}"
