"""What leaves the host for another server: outbound HTTP here, and in ``db/`` the database
connectors (PostgreSQL, MySQL/MariaDB, Redis: ``app.databases``, :mod:`omnicore.egress.db`).

The http capability, Extism's ``http_request`` and workflow connector steps all send through
one HTTP client, so one policy and one redaction rule hold; a connector's credentials come from
the secret store for both kinds.

::

    rules.py       allow rules for hosts; the address policy (private addresses refused)
    policy.py      a client's rules, addresses, connectors and limits (from an http grant)
    connectors.py  named upstreams: base URL and credentials from the secret store
    request.py     a request (secret references in headers) and its redacted response
    client.py      the pinned urllib3 client: redirects re-checked, bytes and time bounded
    redact.py      secrets cut out in every spelling: raw, JSON, URL, base64, hex, decoded
    refused.py     why a request got no answer (DENIED, INVALID, QUOTA, TOO_LARGE, ...)
    service.py     ``app.egress``: connectors, secrets, and a client per caller
    db/            the database connectors: pools shared by plugins, statements gated and
                   bounded by the caller's deadline (its own map)
"""

from omnicore.egress.client import Client
from omnicore.egress.connectors import Connector, connectors_from
from omnicore.egress.policy import DEFAULTS, Policy, check_grant
from omnicore.egress.redact import Redactor
from omnicore.egress.refused import Refused, SecretMissing
from omnicore.egress.request import MAX_REQUEST_JSON, Request, Response, SecretRef
from omnicore.egress.rules import AddressPolicy, HostRule
from omnicore.egress.service import Egress

__all__ = ["DEFAULTS", "MAX_REQUEST_JSON", "AddressPolicy", "Client", "Connector", "Egress",
           "HostRule", "Policy", "Redactor", "Refused", "Request", "Response", "SecretMissing",
           "SecretRef", "check_grant", "connectors_from"]
