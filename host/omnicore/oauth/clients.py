"""Client ID metadata documents: a client whose ``client_id`` is an https URL publishes its
metadata (name, redirect URIs) as JSON at that URL, and the host fetches it instead of
keeping a registration.

The fetch goes through the host's egress client (omnicore.egress) with a policy of its own:
any host name, but the address policy refuses loopback, private and link-local addresses (a
client id cannot make the host reach inside its own network), one small bounded answer, no
redirect. ``allow_loopback`` (``mcp.oauth.loopback_client_ids``, for tests and local agents)
admits ``http://127.0.0.1:PORT/...`` ids, and nothing else over plain http.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from mcp.shared.auth import OAuthClientInformationFull

from omnicore.egress.client import Client
from omnicore.egress.policy import Policy
from omnicore.egress.request import Request
from omnicore.errors import OmniError

__all__ = ["MAX_DOCUMENT_BYTES", "MetadataDocuments", "is_document_id"]

MAX_DOCUMENT_BYTES = 16 * 1024
#: How long a fetched document is trusted before it is fetched again.
CACHE_S = 300.0


def is_document_id(client_id: str, *, allow_loopback: bool = False) -> bool:
    """Whether ``client_id`` names a metadata document: an https URL with a path (or, when
    allowed, an http URL on 127.0.0.1)."""
    try:
        url = urlsplit(client_id)
    except ValueError:
        return False
    if url.path in ("", "/") or url.fragment or url.username or url.password:
        return False
    if url.scheme == "https" and url.hostname:
        return True
    return allow_loopback and url.scheme == "http" and url.hostname == "127.0.0.1"


class MetadataDocuments:
    """Fetches, checks and caches client ID metadata documents."""

    def __init__(self, *, allow_loopback: bool = False) -> None:
        self.allow_loopback = allow_loopback
        grant: dict[str, Any] = {"allow_hosts": ["https://*:*"], "max_redirects": 0,
                                 "max_response_bytes": MAX_DOCUMENT_BYTES, "timeout_ms": 5000}
        if allow_loopback:
            grant["allow_hosts"] = ["https://*:*", "http://127.0.0.1:*"]
            grant["allow_addresses"] = ["127.0.0.1/32"]
        self._client = Client(Policy.from_grant(grant, "oauth-client-metadata"))
        self._cache: dict[str, tuple[float, OAuthClientInformationFull | None]] = {}
        self._lock = threading.Lock()

    def get(self, client_id: str) -> OAuthClientInformationFull | None:
        """The client ``client_id`` names, or None when it names none (not a document id,
        unreachable, not a valid document, or a document for another id)."""
        if not is_document_id(client_id, allow_loopback=self.allow_loopback):
            return None
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(client_id)
        if cached is not None and now - cached[0] < CACHE_S:
            return cached[1]
        found = self._fetch(client_id)
        with self._lock:
            if len(self._cache) > 1000:
                self._cache.clear()
            self._cache[client_id] = (now, found)
        return found

    def _fetch(self, client_id: str) -> OAuthClientInformationFull | None:
        try:
            answer = self._client.send(Request(url=client_id,
                                               headers={"Accept": "application/json"}))
            doc = json.loads(answer.body) if answer.status == 200 else None
        except (OmniError, ValueError, OSError):
            return None
        if not isinstance(doc, dict) or doc.get("client_id") != client_id:
            return None
        uris = doc.get("redirect_uris")
        if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
            return None
        try:
            return OAuthClientInformationFull(
                client_id=client_id, redirect_uris=uris,
                client_name=str(doc.get("client_name") or client_id)[:200],
                client_uri=doc.get("client_uri"), token_endpoint_auth_method="none",
                grant_types=["authorization_code", "refresh_token"], response_types=["code"],
                scope=" ".join(SCOPES))
        except ValueError:
            return None


#: The one scope: calling the tools the user approved (the grant names them).
SCOPES = ("mcp:tools",)
