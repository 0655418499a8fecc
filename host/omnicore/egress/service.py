"""``app.egress``: the app's outbound HTTP, whoever asks for it.

The composition root builds one :class:`Egress` from the app's connectors and secret store.
It hands out a :class:`Client` per caller: one per plugin ``http`` grant (the capability and
Extism's ``http_request``), one per connector for workflow connector steps; all of them apply
the same rules, address policy, limits and redaction, because they are the same client.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from omnicore.egress.client import Client
from omnicore.egress.connectors import Connector
from omnicore.egress.policy import Policy

__all__ = ["CONNECTOR_CONCURRENCY", "Egress", "SecretSource"]

#: Requests in flight to one connector from workflow steps (each also holds a step worker).
CONNECTOR_CONCURRENCY = 32


class SecretSource(Protocol):
    """Where credentials come from (``app.secrets`` has it)."""

    def get(self, name: str) -> bytes | None: ...


class Egress:
    """Outbound HTTP for the app: connectors and their credentials, and the clients that
    every door (plugins, Extism plugins, workflow steps) sends through."""

    def __init__(self, connectors: Callable[[], Mapping[str, Connector]] = dict,
                 secrets: Callable[[], SecretSource] | None = None) -> None:
        self._connectors = connectors
        self._secrets = secrets
        self._lock = threading.Lock()
        self._by_connector: dict[tuple[str, int], tuple[Connector, Client]] = {}

    @property
    def connectors(self) -> Mapping[str, Connector]:
        """The app's connectors (``connectors.<name>`` in the config)."""
        return self._connectors()

    def read_secret(self, name: str) -> bytes | None:
        """One secret's value, or None when it is not set (or there is no secret store)."""
        return None if self._secrets is None else self._secrets().get(name)

    def client(self, plugin: str, grant: Mapping[str, Any]) -> Client:
        """A client for ``plugin``'s ``http`` grant; ConfigError when the grant is invalid or
        names a connector the app does not define."""
        policy = Policy.from_grant(grant, plugin, self.connectors if grant.get("connectors")
                                   else None)
        return Client(policy, self.read_secret)

    def connector_client(self, name: str, *, max_response_bytes: int) -> Client:
        """The client of connector ``name`` for workflow steps: requests under its base URL
        only, no redirect followed; KeyError when the app has no such connector."""
        connector = self.connectors[name]
        key = (name, max_response_bytes)
        with self._lock:
            found = self._by_connector.get(key)
            if found is None or found[0] != connector:   # the config changed: a new client
                policy = Policy.for_connector(connector, max_response_bytes=max_response_bytes,
                                              max_concurrent=CONNECTOR_CONCURRENCY)
                client = Client(policy, self.read_secret, f"connector {name!r}'s steps")
                found = self._by_connector[key] = (connector, client)
            return found[1]
