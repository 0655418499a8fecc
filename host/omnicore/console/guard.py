"""Who may even ask: the ``Host`` a request names, and the origin of every change.

A console on loopback is still reachable by every web page the operator's browser opens:

* **DNS rebinding**: a page on ``evil.example`` whose name is made to resolve to 127.0.0.1
  talks to the console as its own origin. Its requests still name ``evil.example`` in
  ``Host:``, so only the console's own names are answered (:func:`allowed_hosts`).
* **Cross-site requests**: a form post or a no-cors ``fetch`` from another origin carries
  ``Origin`` (and ``Sec-Fetch-Site``) headers that browsers do not let a page forge. Every
  state-changing request that carries them must come from the console's own origin.

Requests without those headers (curl, the CLI, scripts) are not from a browser page and pass
this check; they still need a token, or, on an open console, a CSRF token when they look like
a browser form (``Auth.check_csrf``). Webhooks (``/hooks/``) are exempt from the origin check:
their senders are servers, and the HMAC signature is their authentication. So are OAuth's
token, registration and revocation endpoints: a browser MCP client on its own origin posts to
them (CORS), and what authenticates there is in the body (a PKCE verifier, a client secret, a
token), never a cookie.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from starlette.types import Scope

from omnicore.console.errors import ApiError

__all__ = ["LOCAL_NAMES", "HostPolicy", "host_name", "refusal"]

LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
WILDCARDS = frozenset({"0.0.0.0", "::", ""})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: What ``Sec-Fetch-Site`` may say of a change: the console's own page, or the user's own
#: action (a typed URL, a bookmark). ``same-site`` is not enough: another port is same-site.
SAME_ORIGIN_SITES = frozenset({"same-origin", "none"})
#: Changes any origin may post (omnicore.console.oauth): nothing there reads a cookie.
CROSS_ORIGIN_PATHS = frozenset({"/token", "/register", "/revoke"})


def host_name(value: str) -> tuple[str, int | None]:
    """``Host``-header ``value`` as (name, port): lower case, no brackets or final dot, an IP
    address in its one canonical spelling."""
    value = value.strip().lower()
    port: int | None = None
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        if rest.startswith(":") and rest[1:].isdecimal():
            port = int(rest[1:])
    else:
        name, sep, tail = value.rpartition(":")
        if sep and tail.isdecimal() and ":" not in name:
            port = int(tail)
        else:
            name = value
    return _canonical(name.rstrip(".")), port


@dataclass(frozen=True)
class HostPolicy:
    """The names the console answers to (``None``: any), and the names configured on purpose
    (whose pages may post from any port: a TLS proxy in front of the console)."""

    names: frozenset[str] | None
    configured: frozenset[str] = frozenset()

    @classmethod
    def of(cls, bind: str, extra: Iterable[str], *, auth: bool) -> HostPolicy:
        """The policy of a console bound to ``bind`` with ``console.allowed_hosts`` ``extra``.

        By default: the loopback names and the bound address. A console with sign-in bound to
        every address (0.0.0.0, ::) answers any name unless ``extra`` lists some: without a
        token or a session, a rebound page can do nothing there. ``"*"`` allows any name.
        """
        configured = frozenset(host_name(e)[0] for e in extra if e.strip())
        if "*" in configured or (not configured and auth and bind in WILDCARDS):
            return cls(None, configured - {"*"})
        bound = {host_name(bind)[0]} - WILDCARDS
        return cls(LOCAL_NAMES | bound | configured, configured)

    def allows(self, name: str) -> bool:
        return self.names is None or name in self.names

    def same_origin(self, origin: str, host: str) -> bool:
        """Whether a page at ``origin`` is this console, reached as ``host``."""
        try:
            parts = urlsplit(origin)
            port = parts.port
        except ValueError:
            return False
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return False
        name = _canonical(parts.hostname.rstrip("."))
        if name in self.configured:
            return True
        host_host, host_port = host_name(host)
        if name != host_host:
            return False
        # A Host without a port (a proxy in front) says nothing about the port.
        effective = port or (443 if parts.scheme == "https" else 80)
        return host_port is None or host_port == effective


def _canonical(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def refusal(policy: HostPolicy, scope: Scope) -> ApiError | None:
    """Why the request of ``scope`` is refused under ``policy`` (None: it is not): a ``Host``
    the console does not answer to (400), a change from another origin (403). The console's
    one middleware (:class:`~omnicore.console.bodies.BodyLimits`, ``check``) asks it before
    any route sees the request."""
    # Only the three headers read below are decoded (the last of each, as before).
    headers: dict[bytes, str] = {}
    for key, value in scope["headers"]:
        key = key.lower()
        if key in _READ:
            headers[key] = value.decode("latin-1")
    host = headers.get(b"host")
    if host is None:
        return ApiError(400, "the request names no Host; the console answers only to its "
                             "own names", type="HostNotAllowed")
    name = _host_name(host)[0]
    if not policy.allows(name):
        return ApiError(400, f"the console does not answer to the host name "
                             f"{name[:100]!r} (a page using DNS rebinding?); add it to "
                             f"console.allowed_hosts if it is really this console",
                        type="HostNotAllowed")
    if scope["method"] in SAFE_METHODS or scope["path"].startswith("/hooks/") \
            or scope["path"] in CROSS_ORIGIN_PATHS:
        return None
    site = headers.get(b"sec-fetch-site")
    if site is not None and site.strip().lower() not in SAME_ORIGIN_SITES:
        return _cross(f"Sec-Fetch-Site: {site[:40]}")
    origin = headers.get(b"origin")
    if origin is not None and not policy.same_origin(origin.strip(), host):
        return _cross(f"Origin: {origin[:100]}")
    return None


_READ = frozenset({b"host", b"sec-fetch-site", b"origin"})
#: Every request names its Host, nearly always the same few: parsed once each (bounded, so a
#: client sending a new name every time only churns it).
_host_name = functools.lru_cache(maxsize=256)(host_name)


def _cross(what: str) -> ApiError:
    return ApiError(403, f"a change from another web site was refused ({what}); the console "
                         f"takes changes only from its own pages, or from clients that are "
                         f"not browsers", type="CrossOrigin")
