"""Connectors in the console: what each one reaches, its pool and its last error, never a
credential (specs/abi.md §4.12).

API (any signed-in user)::

    GET /api/v1/connectors    every connector: name, kind, host, database, the secret's
                              name and whether it is set, pool in use/idle, last error,
                              the plugins granted it

The Secrets page shows the same list beside the secrets the connectors use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from starlette.routing import BaseRoute

from omnicore.console import base

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["listing", "routes"]

# The grant options that name connectors, by capability.
_GRANTS = ("http", "sql", "redis")


def _granted(app: OmniApp) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for info in app.plugins:
        for cap in _GRANTS:
            names = (info.granted.get(cap) or {}).get("connectors") or ()
            for name in names if isinstance(names, list | tuple) else ():
                out.setdefault(str(name), []).append(info.name)
    return out


def listing(app: OmniApp) -> list[dict[str, Any]]:
    """Every connector of the app, HTTP and database, as the console shows it."""
    granted = _granted(app)
    rows: list[dict[str, Any]] = []
    for name, c in sorted(app.connectors.items()):
        parts = urlsplit(c.base_url)
        rows.append({"name": name, "kind": "http", "host": parts.hostname, "port": parts.port,
                     "database": None, "base_url": c.base_url, "auth": c.auth,
                     "secret": c.secret, "in_use": None, "idle": None, "last_error": None,
                     "last_error_at": None})
    for row in app.databases.describe():
        connector = app.databases.connectors[row["name"]]
        rows.append({**row, "secret": connector.secret or connector.url_secret})
    for row in rows:
        row["granted_to"] = sorted(set(granted.get(row["name"], [])))
        # A secret never set fails every call of the connector: the Secrets page flags it.
        row["secret_set"] = None if row["secret"] is None else row["secret"] in app.secrets
    return sorted(rows, key=lambda r: r["name"])


def routes() -> list[BaseRoute]:
    return base.api("/connectors", GET=base.lister(listing))
