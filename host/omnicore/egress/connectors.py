"""Connectors: named upstreams from ``connectors.<name>`` in the app config.

A connector is a base URL plus how to authenticate; the credential is a secret from the
secret store, added on the host at send time, only to URLs under the base URL, and cut out of
everything the caller gets back. A connector's base URL is also a grant of its own: its IP
literal, and the networks in its ``allow_addresses``, may be reached by requests under it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from omnicore.egress.refused import Refused
from omnicore.egress.rules import DEFAULT_PORT, IP, Network, ip_of, networks
from omnicore.errors import ConfigError
from omnicore.httpfields import NAME_RULE, VALUE_RULE, is_name, is_value
from omnicore.storage.secrets import check_name

__all__ = ["AUTH_KINDS", "Connector", "connectors_from"]

AUTH_KINDS = ("none", "bearer", "basic", "header", "query")
_KEYS = frozenset({"base_url", "auth", "secret", "username", "header", "param", "headers",
                   "allow_addresses"})


@dataclass(frozen=True)
class Connector:
    """A named upstream from ``connectors.<name>``: base URL plus how to authenticate."""

    name: str
    base_url: str
    auth: str = "none"                  # one of AUTH_KINDS
    secret: str | None = None
    username: str | None = None         # basic
    header: str | None = None           # header: its name
    param: str | None = None            # query: the parameter's name
    headers: Mapping[str, str] = field(default_factory=dict)
    allow_addresses: tuple[Network, ...] = ()

    def __post_init__(self) -> None:
        key = f"connectors.{self.name}"
        parts = urlsplit(self.base_url)
        if parts.scheme not in DEFAULT_PORT or not parts.hostname:
            raise ConfigError(f"{key}.base_url must be an http(s) URL, got {self.base_url!r}",
                              key=f"{key}.base_url")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ConfigError(f"{key}.base_url cannot carry a query, fragment or credentials "
                              "(put credentials in a secret)", key=f"{key}.base_url")
        if self.auth not in AUTH_KINDS:
            raise ConfigError(f"{key}.auth must be none, bearer, basic, header or query, got "
                              f"{self.auth!r}", key=f"{key}.auth")
        if self.auth != "none":
            if self.secret is None:
                raise ConfigError(f"{key}.secret must name the secret {self.auth} auth uses",
                                  key=f"{key}.secret")
            check_name(self.secret)
        needs = {"header": "header", "query": "param", "basic": "username"}.get(self.auth)
        if needs and not getattr(self, needs):
            raise ConfigError(f"{key}.{needs} is required with auth: {self.auth}",
                              key=f"{key}.{needs}")
        if self.header is not None and not is_name(self.header):
            raise ConfigError(f"{key}.header {self.header[:100]!r}: {NAME_RULE}",
                              key=f"{key}.header")
        for name, value in self.headers.items():
            if not is_name(name):
                raise ConfigError(f"{key}.headers: {name[:100]!r}: {NAME_RULE}",
                                  key=f"{key}.headers")
            if not isinstance(value, str) or not is_value(value):
                raise ConfigError(f"{key}.headers.{name}: {VALUE_RULE}", key=f"{key}.headers")

    @property
    def origin(self) -> tuple[str, str, int]:
        """(scheme, host, port) of the base URL."""
        parts = urlsplit(self.base_url)
        return (parts.scheme, (parts.hostname or "").lower(),
                parts.port or DEFAULT_PORT[parts.scheme])

    def url(self, path: str) -> str:
        """The upstream URL of ``path``; refuses anything that could leave the base URL."""
        if (not path.startswith("/") or path.startswith("//") or "\\" in path
                or any(c in path for c in "\r\n\t #") or any(
                    seg in ("..", ".") for seg in path.split("?", 1)[0].split("/"))):
            raise Refused("INVALID", f"connector path must be an absolute path like "
                                     f"'/items?x=1', got {path[:200]!r}")
        return self.base_url.rstrip("/") + path

    def covers(self, scheme: str, host: str, port: int, path: str) -> bool:
        """Whether a URL lies under the base URL (credentials go only there)."""
        base = urlsplit(self.base_url).path.rstrip("/")
        return (scheme, host, port) == self.origin and (
            not base or path == base or path.startswith(base + "/"))

    @property
    def named_address(self) -> frozenset[IP]:
        """The base URL's host when it is an IP literal: naming it is granting it."""
        ip = ip_of(self.origin[1])
        return frozenset() if ip is None else frozenset({ip})

    def credentials(self, value: bytes) -> tuple[dict[str, str], dict[str, str], list[str]]:
        """(headers, query params, the strings to cut from anything the caller sees)."""
        text = value.decode("utf-8", "replace")
        if self.auth in ("bearer", "header") and not is_value(text):
            # (an operator's secret, but a CR LF in it would add a header of its own)
            raise Refused("INVALID", f"connector {self.name!r}: its secret breaks the rule "
                                     f"that {VALUE_RULE}")
        if self.auth == "bearer":
            return {"Authorization": f"Bearer {text}"}, {}, [text]
        if self.auth == "basic":
            pair = base64.b64encode(f"{self.username}:{text}".encode()).decode()
            return {"Authorization": f"Basic {pair}"}, {}, [text, pair]
        if self.auth == "header":
            return {str(self.header): text}, {}, [text]
        return {}, {str(self.param): text}, [text]


def connectors_from(config: Mapping[str, Any]) -> dict[str, Connector]:
    """The HTTP connectors (kind ``http``, the default) from the app config's ``connectors``
    mapping; ConfigError names the key."""
    out = {}
    for name, spec in config.items():
        data = spec if isinstance(spec, Mapping) else (
            spec.model_dump() if hasattr(spec, "model_dump") else None)
        if data is None:
            raise ConfigError(f"connectors.{name} must be a mapping", key=f"connectors.{name}")
        data = {k: v for k, v in data.items() if v is not None}
        if data.pop("kind", "http") != "http":
            continue  # a database connector: omnicore.egress.db's
        unknown = sorted(set(data) - _KEYS)
        if unknown:
            raise ConfigError(f"connectors.{name}: unknown key {unknown[0]!r}",
                              key=f"connectors.{name}.{unknown[0]}")
        if "base_url" not in data:
            raise ConfigError(f"connectors.{name}.base_url is required",
                              key=f"connectors.{name}.base_url")
        nets = networks(data.pop("allow_addresses", []), f"connectors.{name}.allow_addresses")
        out[name] = Connector(name=name, allow_addresses=nets, **data)
    return out
