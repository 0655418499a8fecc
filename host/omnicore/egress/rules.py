"""Where a request may go: allow rules for hosts, and the address policy for what they resolve to.

A URL's scheme, host and port must match a :class:`HostRule` (or lie under a connector's base
URL); then every address the host resolves to must be global — not private, loopback,
link-local (cloud metadata), shared, reserved or multicast — unless the policy names it as an
IP literal or inside one of its networks (:class:`AddressPolicy`).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from omnicore.errors import ConfigError

__all__ = ["DEFAULT_PORT", "IP", "AddressPolicy", "HostRule", "Network", "ip_of", "networks"]

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_PORT = {"http": 80, "https": 443}


#: Glob characters of an ``allow_hosts`` host (Extism's ``allowed_hosts`` are globs).
_GLOB = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class HostRule:
    """One ``allow_hosts`` entry: ``[scheme://]host[:port]``, host exact, ``*.suffix`` or a
    glob (``*``, ``?``, ``[...]``, matched as Extism matches ``allowed_hosts``).

    No scheme means https only; no port means the scheme's default port; ``:*`` any port.
    A glob never names an address (``literal``): what it matches still passes the address
    policy.
    """

    host: str
    scheme: str | None = None      # None: https
    port: int | None = None        # None: the scheme's default; -1: any
    wildcard: bool = False
    glob: bool = False

    @classmethod
    def parse(cls, text: str) -> HostRule:
        where = f"grant.http.allow_hosts: {text!r}"
        scheme = None
        rest = text.strip().lower()
        if "://" in rest:
            scheme, rest = rest.split("://", 1)
            if scheme not in DEFAULT_PORT:
                raise ConfigError(f"{where}: scheme must be http or https", key="grant.http")
        if not rest or "/" in rest or "@" in rest:
            raise ConfigError(f"{where}: write [scheme://]host[:port], e.g. api.example.com, "
                              "http://127.0.0.1:8080, https://*.example.com", key="grant.http")
        port: int | None = None
        if rest.startswith("["):                      # [v6]:port
            end = rest.find("]")
            host, tail = rest[1:end], rest[end + 1:]
        else:
            host, _, tail = rest.partition(":")
            tail = ":" + tail if tail else ""
        if tail:
            digits = tail[1:]
            if digits == "*":
                port = -1
            elif digits.isdecimal() and 0 < int(digits) < 65536:
                port = int(digits)
            else:
                raise ConfigError(f"{where}: bad port {digits!r}", key="grant.http")
        glob = bool(_GLOB & set(host[2:] if host.startswith("*.") else host))
        wildcard = host.startswith("*.") and not glob
        if wildcard:
            host = host[1:]                           # ".example.com"
        if not host:
            raise ConfigError(f"{where}: no host", key="grant.http")
        return cls(host=host.rstrip("."), scheme=scheme, port=port, wildcard=wildcard,
                   glob=glob)

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if scheme != (self.scheme or "https"):
            return False
        if self.port != -1 and port != (self.port or DEFAULT_PORT[scheme]):
            return False
        if self.glob:
            return fnmatchcase(host, self.host)
        return host.endswith(self.host) and len(host) > len(self.host) if self.wildcard \
            else host == self.host

    @property
    def literal(self) -> IP | None:
        """The IP address this rule names, if it names one exactly."""
        return None if self.wildcard or self.glob else ip_of(self.host)


def ip_of(host: str) -> IP | None:
    """``host`` as an IP address, if it is an IP literal (brackets allowed)."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def networks(values: object, key: str) -> tuple[Network, ...]:
    """A config list of addresses or CIDR networks; ConfigError names ``key``."""
    if not isinstance(values, list | tuple):
        raise ConfigError(f"{key} must be a list of addresses or networks (CIDR)", key=key,
                          value=values)
    out = []
    for v in values:
        try:
            out.append(ipaddress.ip_network(str(v), strict=False))
        except ValueError:
            raise ConfigError(f"{key}: {v!r} is not an address or network like 10.0.0.0/8",
                              key=key, value=v) from None
    return tuple(out)


@dataclass(frozen=True, slots=True)
class AddressPolicy:
    """Which resolved addresses a request may connect to: every global one, plus the
    addresses and networks the operator named (a grant's or a connector's)."""

    named: frozenset[IP] = frozenset()
    networks: tuple[Network, ...] = ()

    def widened(self, named: Iterable[IP], nets: Iterable[Network]) -> AddressPolicy:
        return AddressPolicy(self.named | frozenset(named), self.networks + tuple(nets))

    def admits(self, ip: IP) -> bool:
        if ip in self.named or any(ip in n for n in self.networks):
            return True
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip.is_global and not ip.is_multicast
