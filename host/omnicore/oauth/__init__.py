"""OAuth 2.1 for remote agents: the host as the authorization server of its own ``/mcp``.

:mod:`~omnicore.oauth.server` is the provider behind the MCP SDK's OAuth endpoints (grants,
codes, tokens, over ``storage.oauth``); :mod:`~omnicore.oauth.clients` fetches client ID
metadata documents through the host's egress policy. The console serves the endpoints, the
metadata, the consent page and the list of authorized clients (omnicore.console.oauth).
"""

from omnicore.oauth.clients import SCOPES, MetadataDocuments, is_document_id
from omnicore.oauth.server import CONSENT_PATH, AuthServer, Consent, OAuthCaller, digest

__all__ = ["CONSENT_PATH", "SCOPES", "AuthServer", "Consent", "MetadataDocuments",
           "OAuthCaller", "digest", "is_document_id"]
