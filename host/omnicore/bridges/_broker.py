"""The seam between the shared at-least-once loop (:mod:`omnicore.bridges._loop`) and one kind
of broker: a :class:`Broker` reads, acknowledges and publishes; it holds no policy.

A broker object is one connection: the loop opens one per inbound route and one for the
outbound routes (a Redis XREADGROUP blocks its connection; a route that fails reconnects
alone), closes it on any error and makes a new one.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

from omnicore.config.bridges import SCHEMES, BridgeConfig, BridgeInbound, BridgeOutbound

__all__ = ["Broker", "Received", "Settings", "within"]

T = TypeVar("T")


async def within(aw: Awaitable[T], seconds: float) -> T:
    """``await aw``, TimeoutError after ``seconds``: asyncio.wait_for without its Python
    3.11 flaw. wait_for returns the result of an awaitable that finished just as its caller
    was cancelled, and the cancellation is lost: a lane cancelled as a quick ``drain()`` or
    reply completed never stopped, and the host's stop waited on it for ever."""
    async with asyncio.timeout(seconds):
        return await aw


@dataclass(frozen=True)
class Received:
    """One message read from the broker, not yet acknowledged."""

    #: The broker's id of the message, stable across redeliveries (``STREAM:SEQ``, an entry
    #: id): the idempotency key of what it is delivered as.
    id: str
    data: bytes = field(repr=False)
    #: What :meth:`Broker.ack` needs (the client's message object, the entry id).
    token: Any = field(repr=False, default=None)
    #: Its size when it was over ``max_message_bytes`` and so not read (``data`` empty).
    too_large: int | None = None


@dataclass(frozen=True)
class Settings:
    """What a broker connects with: the bridge's config, its name, the consumer name of this
    host, and the secret's value (read from the secret store at each connect)."""

    name: str
    config: BridgeConfig
    consumer: str
    secret: str | None = field(repr=False, default=None)

    @property
    def user(self) -> str | None:
        parts = urlsplit(self.config.url)
        return unquote(parts.username) if parts.username else None

    def tls(self) -> ssl.SSLContext | None:
        """A verifying TLS context for a TLS url (``ca_file`` or the system's CAs), else None."""
        if urlsplit(self.config.url).scheme != SCHEMES[self.config.kind][1]:
            return None
        ca = self.config.ca_file
        return ssl.create_default_context(cafile=str(ca) if ca is not None else None)

    @property
    def timeout(self) -> float:
        """How long one wait on the broker may take (``confirm_timeout_s``): a connect, a
        reply, a confirmation, a write drained."""
        return self.config.confirm_timeout_s

    async def open(self, port: int, tls_port: int,
                   ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A stream to the broker of the url (its port, else ``port``, ``tls_port`` over
        TLS), the server's certificate verified by :meth:`tls`; TimeoutError after
        :attr:`timeout`."""
        parts = urlsplit(self.config.url)
        tls = self.tls()
        return await within(asyncio.open_connection(
            parts.hostname, parts.port or (tls_port if tls else port), ssl=tls,
            server_hostname=parts.hostname if tls else None), self.timeout)

    def group(self, route: BridgeInbound) -> str:
        """The durable consumer / consumer group every host shares for ``route``."""
        if route.group is not None:
            return route.group
        return "omnicore-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in self.name)


class Broker(Protocol):
    """One connection to a broker of one kind (``nats``, ``redis``, ``mqtt``, ``rabbitmq``)."""

    async def connect(self, lane: str) -> None:
        """Connect and authenticate for ``lane`` (``inbound[N]``, ``outbound``); raises what
        the broker answered."""

    async def close(self) -> None:
        """Close the connection; never raises."""

    async def fetch(self, route: BridgeInbound, limit: int, wait_s: float) -> list[Received]:
        """Up to ``limit`` messages of ``route`` (redeliveries included), waiting up to
        ``wait_s`` for the first; an empty list when none came."""

    async def ack(self, route: BridgeInbound, message: Received) -> None:
        """Acknowledge ``message``: the broker will not deliver it again. Returns once the
        broker confirmed."""

    async def publish(self, route: BridgeOutbound, message_id: str, event: str,
                      data: bytes, headers: Mapping[str, str] | None = None) -> str:
        """Publish ``data`` (the event type ``event``) and return the broker's confirmation
        (a JetStream sequence, a stream entry id) once it has it; ``message_id`` is the same
        on every retry of one message. ``headers`` (a dead letter's reason...) travel as the
        kind's headers, entry fields or user properties."""
