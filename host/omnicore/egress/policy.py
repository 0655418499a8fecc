"""A :class:`Policy`: everything that decides where one client's requests may go and what they
may cost, built from an ``http`` grant (or, for a workflow's connector step, from the
connector alone)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omnicore.egress.connectors import Connector
from omnicore.egress.rules import AddressPolicy, HostRule, networks
from omnicore.errors import ConfigError

__all__ = ["DEFAULTS", "GRANT_OPTIONS", "Policy", "check_grant"]

#: The limits of a grant that does not say otherwise.
DEFAULTS: dict[str, int] = {"max_response_bytes": 8 << 20, "max_request_bytes": 8 << 20,
                            "timeout_ms": 10_000, "max_redirects": 5, "max_concurrent": 4}
GRANT_OPTIONS = ("allow_hosts", "allow_addresses", "connectors", *DEFAULTS)


def _limit(options: Mapping[str, Any], key: str) -> int:
    value = options.get(key, DEFAULTS[key])
    if isinstance(value, bool) or not isinstance(value, int) or value < (
            0 if key == "max_redirects" else 1):
        raise ConfigError(f"grant.http.{key} must be a positive integer, got {value!r}",
                          key=f"grant.http.{key}", value=value)
    return value


def check_grant(options: Mapping[str, Any]) -> None:
    """ConfigError, naming the option, unless ``options`` is a valid ``http`` grant."""
    unknown = sorted(set(options) - set(GRANT_OPTIONS))
    if unknown:
        raise ConfigError(f"grant 'http' has no option {unknown[0]!r} (known: "
                          f"{', '.join(GRANT_OPTIONS)})", key=f"grant.http.{unknown[0]}")
    for key in ("allow_hosts", "connectors"):
        value = options.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"grant.http.{key} must be a list of names", key=f"grant.http.{key}",
                              value=value)
    for rule in options.get("allow_hosts", []):
        HostRule.parse(rule)
    networks(options.get("allow_addresses", []), "grant.http.allow_addresses")
    for key in DEFAULTS:
        _limit(options, key)


@dataclass(frozen=True)
class Policy:
    """Allowed hosts, reachable addresses, granted connectors, and the limits of a client."""

    rules: tuple[HostRule, ...] = ()
    addresses: AddressPolicy = field(default_factory=AddressPolicy)
    connectors: Mapping[str, Connector] = field(default_factory=dict)
    max_response_bytes: int = DEFAULTS["max_response_bytes"]
    max_request_bytes: int = DEFAULTS["max_request_bytes"]
    timeout_ms: int = DEFAULTS["timeout_ms"]
    max_redirects: int = DEFAULTS["max_redirects"]
    max_concurrent: int = DEFAULTS["max_concurrent"]

    @classmethod
    def from_grant(cls, options: Mapping[str, Any], plugin: str,
                   connectors: Mapping[str, Connector] | None = None) -> Policy:
        """The policy of ``plugin``'s ``http`` grant; ConfigError when it is invalid or names
        a connector the app does not define."""
        check_grant(options)
        known = connectors or {}
        wanted = list(options.get("connectors", []))
        missing = [n for n in wanted if n not in known]
        if missing:
            raise ConfigError(f"plugin {plugin!r}: grant 'http' names connector "
                              f"{missing[0]!r}, which the app does not define (connectors: "
                              f"{', '.join(sorted(known)) or 'none'})",
                              key=f"plugins.{plugin}.grants.http.connectors")
        rules = tuple(HostRule.parse(r) for r in options.get("allow_hosts", []))
        named = frozenset(r.literal for r in rules if r.literal is not None)
        nets = networks(options.get("allow_addresses", []), "grant.http.allow_addresses")
        return cls(rules, AddressPolicy(named, nets), {n: known[n] for n in wanted},
                   *(_limit(options, k) for k in DEFAULTS))

    @classmethod
    def for_connector(cls, connector: Connector, *, max_response_bytes: int,
                      max_concurrent: int) -> Policy:
        """Requests under one connector's base URL and nowhere else (no redirect is
        followed): what a workflow's connector step may do."""
        return cls(connectors={connector.name: connector},
                   max_response_bytes=max_response_bytes, max_request_bytes=max_response_bytes,
                   timeout_ms=24 * 3600 * 1000, max_redirects=0, max_concurrent=max_concurrent)
