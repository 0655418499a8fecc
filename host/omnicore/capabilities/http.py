"""``omnicore:http`` (specs/abi.md §4.7): outbound HTTP through the operator's allow-list, and
connectors that add credentials the plugin never sees.

``request(req, req_len, body, body_len) -> i64`` (§3.3). ``req`` is JSON
``{"method", "url", "headers", "timeout_ms"}`` or ``{"method", "connector", "path", ...}``;
the answer is a guest-owned block ``head_len: u32 LE | {"status", "headers"} | body``, a
refusal or failure ``E = 1`` with ``"DENIED: ..."``, ``"INVALID: ..."``, ``"QUOTA: ..."``,
``"TOO_LARGE: ..."`` or ``"UNAVAILABLE: ..."``.

Where a request may go, checked for the first URL and again for every redirect:

* the URL's scheme, host and port must match one of the grant's ``allow_hosts`` rules
  (``api.example.com`` = https on 443; ``http://h:8080``, ``https://*.example.com:*``), or
  lie under a granted connector's base URL;
* the host resolves the name itself and refuses every address that is not global (private,
  loopback, link-local — cloud metadata —, shared, reserved, multicast) unless the grant
  names it: as an IP literal in ``allow_hosts`` (or a connector's base URL), or inside a
  network of ``allow_addresses``;
* the connection goes to the address that was checked (a urllib3 pool per address, with the
  name kept for ``Host``, SNI and certificate checks), so DNS cannot answer differently
  between the check and the connect.

What a plugin can make the host spend is bounded by the grant: requests in flight
(``max_concurrent``, a DNS lookup that outlives its call keeps its slot until it ends), the
request JSON (64 KiB) and body (``max_request_bytes``), the response (``max_response_bytes``,
counted as it streams in, never decompressed by the host), and time: ``timeout_ms`` for the
whole exchange, redirects included, and never past the call's own deadline — every socket
read waits at most for what is left, so a slow-drip response cannot hold the call.

Credentials of a connector (``connectors.<name>`` in the app config: ``base_url``, ``auth``
``bearer|basic|header|query``, ``secret``) are added on the host, only to URLs under the base
URL (not to a redirect elsewhere), and cut out of anything returned to the plugin.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import logging
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote, urlencode, urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from omnicore.capabilities import guestjson
from omnicore.errors import ConfigError
from omnicore.sandbox.capability import Capability, GuestMemory, HostFunction, PluginContext
from omnicore.storage.secrets import SecretStore, check_name

__all__ = ["CAPABILITY", "DEFAULTS", "Client", "Connector", "HostRule", "HttpRefused", "Response",
           "capability", "connectors_from", "for_app"]

DEFAULTS: dict[str, int] = {"max_response_bytes": 8 << 20, "max_request_bytes": 8 << 20,
                            "timeout_ms": 10_000, "max_redirects": 5, "max_concurrent": 4}
MAX_REQUEST_JSON = 64 * 1024
_OPTIONS = ("allow_hosts", "allow_addresses", "connectors", *DEFAULTS)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Framing headers are the host's to write; a guest setting them could smuggle requests.
_HOST_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection",
                           "te", "upgrade", "proxy-authorization", "trailer", "keep-alive"})
# Sent on to a redirect only when it stays on the same origin (as browsers do).
_ORIGIN_HEADERS = frozenset({"authorization", "cookie"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORT = {"http": 80, "https": 443}
_CHUNK = 64 * 1024
_POOLS_PER_PLUGIN = 8
_REDACTED = "[REDACTED]"

# Name lookups run here so that a slow resolver cannot hold a call past its deadline.
_resolver = ThreadPoolExecutor(max_workers=8, thread_name_prefix="omnicore-dns")


class _QueryRedactor(logging.Filter):
    """urllib3 logs each request line at debug, query string included, and a connector's
    query auth puts the secret there: cut every query out of those lines."""

    _query = re.compile(r"\?[^ \"]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            record.msg = self._query.sub("?[query]", record.getMessage())
            record.args = ()
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_QueryRedactor())


class HttpRefused(Exception):
    """A request the grant refused or that failed: ``status`` is ``DENIED``, ``INVALID``,
    ``QUOTA``, ``TOO_LARGE`` or ``UNAVAILABLE``, the message says why (never a credential)."""

    def __init__(self, status: str, message: str) -> None:
        super().__init__(message)
        self.status = status


class _Refused(HttpRefused):
    pass


# -- allow-list rules -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HostRule:
    """One ``allow_hosts`` entry: ``[scheme://]host[:port]``, host exact or ``*.suffix``.

    No scheme means https only; no port means the scheme's default port; ``:*`` any port.
    """

    host: str
    scheme: str | None = None      # None: https
    port: int | None = None        # None: the scheme's default; -1: any
    wildcard: bool = False

    @classmethod
    def parse(cls, text: str) -> HostRule:
        where = f"grant.http.allow_hosts: {text!r}"
        scheme = None
        rest = text.strip().lower()
        if "://" in rest:
            scheme, rest = rest.split("://", 1)
            if scheme not in _DEFAULT_PORT:
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
            elif digits.isdigit() and 0 < int(digits) < 65536:
                port = int(digits)
            else:
                raise ConfigError(f"{where}: bad port {digits!r}", key="grant.http")
        wildcard = host.startswith("*.")
        if wildcard:
            host = host[1:]                           # ".example.com"
        if not host or "*" in host:
            raise ConfigError(f"{where}: '*' may only start the host ('*.example.com')",
                              key="grant.http")
        return cls(host=host.rstrip("."), scheme=scheme, port=port, wildcard=wildcard)

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if scheme != (self.scheme or "https"):
            return False
        if self.port != -1 and port != (self.port or _DEFAULT_PORT[scheme]):
            return False
        return host.endswith(self.host) and len(host) > len(self.host) if self.wildcard \
            else host == self.host

    @property
    def literal(self) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
        """The IP address this rule names, if it names one exactly."""
        return None if self.wildcard else _ip(self.host)


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _networks(values: object, key: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network,
                                                 ...]:
    if not isinstance(values, list):
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


# -- connectors -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Connector:
    """A named upstream from ``connectors.<name>``: base URL plus how to authenticate."""

    name: str
    base_url: str
    auth: str = "none"                  # none | bearer | basic | header | query
    secret: str | None = None
    username: str | None = None         # basic
    header: str | None = None           # header: its name
    param: str | None = None            # query: the parameter's name
    headers: Mapping[str, str] = field(default_factory=dict)
    allow_addresses: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def __post_init__(self) -> None:
        key = f"connectors.{self.name}"
        parts = urlsplit(self.base_url)
        if parts.scheme not in _DEFAULT_PORT or not parts.hostname:
            raise ConfigError(f"{key}.base_url must be an http(s) URL, got {self.base_url!r}",
                              key=f"{key}.base_url")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ConfigError(f"{key}.base_url cannot carry a query, fragment or credentials "
                              "(put credentials in a secret)", key=f"{key}.base_url")
        if self.auth not in ("none", "bearer", "basic", "header", "query"):
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

    @property
    def _base(self) -> tuple[str, str, int, str]:
        parts = urlsplit(self.base_url)
        scheme = parts.scheme
        return (scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORT[scheme],
                parts.path.rstrip("/"))

    def url(self, path: str) -> str:
        """The upstream URL of ``path``; refuses anything that could leave the base URL."""
        if (not path.startswith("/") or path.startswith("//") or "\\" in path
                or any(c in path for c in "\r\n\t #") or any(
                    seg in ("..", ".") for seg in path.split("?", 1)[0].split("/"))):
            raise _Refused("INVALID", f"connector path must be an absolute path like "
                                      f"'/items?x=1', got {path[:200]!r}")
        return self.base_url.rstrip("/") + path

    def covers(self, scheme: str, host: str, port: int, path: str) -> bool:
        """Whether a URL lies under the base URL (credentials go only there)."""
        b_scheme, b_host, b_port, b_path = self._base
        return (scheme, host, port) == (b_scheme, b_host, b_port) and (
            not b_path or path == b_path or path.startswith(b_path + "/"))

    def credentials(self, value: bytes) -> tuple[dict[str, str], dict[str, str], list[str]]:
        """(headers, query params, the strings to cut from anything the plugin sees)."""
        text = value.decode("utf-8", "replace")
        if self.auth == "bearer":
            return {"Authorization": f"Bearer {text}"}, {}, [text]
        if self.auth == "basic":
            pair = base64.b64encode(f"{self.username}:{text}".encode()).decode()
            return {"Authorization": f"Basic {pair}"}, {}, [text, pair]
        if self.auth == "header":
            return {str(self.header): text}, {}, [text]
        return {}, {str(self.param): text}, [text, quote(text, safe=""),
                                             urlencode({"x": text})[2:]]


def connectors_from(config: Mapping[str, Any]) -> dict[str, Connector]:
    """Connectors from the app config's ``connectors`` mapping; ConfigError names the key."""
    out = {}
    for name, spec in config.items():
        data = spec if isinstance(spec, Mapping) else (
            spec.model_dump() if hasattr(spec, "model_dump") else None)
        if data is None:
            raise ConfigError(f"connectors.{name} must be a mapping", key=f"connectors.{name}")
        data = {k: v for k, v in data.items() if v is not None}
        unknown = set(data) - {"base_url", "auth", "secret", "username", "header", "param",
                               "headers", "allow_addresses"}
        if unknown:
            raise ConfigError(f"connectors.{name}: unknown key {sorted(unknown)[0]!r}",
                              key=f"connectors.{name}.{sorted(unknown)[0]}")
        if "base_url" not in data:
            raise ConfigError(f"connectors.{name}.base_url is required",
                              key=f"connectors.{name}.base_url")
        nets = _networks(data.pop("allow_addresses", []), f"connectors.{name}.allow_addresses")
        out[name] = Connector(name=name, allow_addresses=nets, **data)
    return out


# -- grant and per-plugin state ---------------------------------------------------------------

def _positive(options: Mapping[str, Any], key: str) -> int:
    value = options.get(key, DEFAULTS[key])
    if isinstance(value, bool) or not isinstance(value, int) or value < (
            0 if key == "max_redirects" else 1):
        raise ConfigError(f"grant.http.{key} must be a positive integer, got {value!r}",
                          key=f"grant.http.{key}", value=value)
    return value


def _check_grant(options: Mapping[str, Any]) -> None:
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise ConfigError(f"grant 'http' has no option {unknown[0]!r} (known: "
                          f"{', '.join(_OPTIONS)})", key=f"grant.http.{unknown[0]}")
    for key in ("allow_hosts", "connectors"):
        value = options.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"grant.http.{key} must be a list of names", key=f"grant.http.{key}",
                              value=value)
    for rule in options.get("allow_hosts", []):
        HostRule.parse(rule)
    _networks(options.get("allow_addresses", []), "grant.http.allow_addresses")
    for key in DEFAULTS:
        _positive(options, key)


class _State:
    def __init__(self, ctx: PluginContext, connectors: Mapping[str, Connector],
                 secrets: Callable[[], SecretStore] | None) -> None:
        grant = ctx.grant
        self.plugin = ctx.plugin
        self.rules = [HostRule.parse(r) for r in grant.get("allow_hosts", [])]
        self.networks = _networks(grant.get("allow_addresses", []), "grant.http.allow_addresses")
        wanted = list(grant.get("connectors", []))
        missing = [n for n in wanted if n not in connectors]
        if missing:
            raise ConfigError(f"plugin {ctx.plugin!r}: grant 'http' names connector "
                              f"{missing[0]!r}, which the app does not define (connectors: "
                              f"{', '.join(sorted(connectors)) or 'none'})",
                              key=f"plugins.{ctx.plugin}.grants.http.connectors")
        self.connectors = {n: connectors[n] for n in wanted}
        self.secrets = secrets
        self.max_response, self.max_request, self.timeout_ms, self.max_redirects, cap = (
            _positive(grant, k) for k in DEFAULTS)
        self.slots = threading.BoundedSemaphore(cap)
        self.max_concurrent = cap
        self._pools: OrderedDict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = \
            OrderedDict()
        self._lock = threading.Lock()

    def pool(self, scheme: str, ip: str, port: int, host: str) -> urllib3.HTTPConnectionPool:
        key = (scheme, ip, port, host)
        with self._lock:
            found = self._pools.get(key)
            if found is not None:
                self._pools.move_to_end(key)
                return found
            if scheme == "https":
                found = urllib3.HTTPSConnectionPool(
                    ip, port, maxsize=self.max_concurrent, retries=False,
                    cert_reqs="CERT_REQUIRED", assert_hostname=host, server_hostname=host)
            else:
                found = urllib3.HTTPConnectionPool(ip, port, maxsize=self.max_concurrent,
                                                   retries=False)
            self._pools[key] = found
            old = self._pools.popitem(last=False)[1] if len(self._pools) > _POOLS_PER_PLUGIN \
                else None
        if old is not None:
            old.close()
        return found


class _Slot:
    """One of the plugin's ``max_concurrent`` request slots, released exactly once."""

    def __init__(self, sem: threading.BoundedSemaphore) -> None:
        self._sem = sem
        self._lock = threading.Lock()
        self._released = False
        self.handed_off = False

    def release(self, _future: object = None) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
        self._sem.release()

    def hand_off(self, future: Future[Any]) -> None:
        self.handed_off = True
        future.add_done_callback(self.release)


# -- one exchange -----------------------------------------------------------------------------

@dataclass
class _Exchange:
    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    connector: Connector | None
    end: float                       # time.monotonic() by which it must be over
    cut: list[str] = field(default_factory=list)   # credentials to redact
    slot: _Slot | None = None

    def left(self) -> float:
        return self.end - time.monotonic()


def _parse(state: _State, raw: bytes, body: bytes, deadline: float) -> _Exchange:
    try:
        req = guestjson.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _Refused("INVALID", f"request is not JSON: {exc}") from None
    if not isinstance(req, dict):
        raise _Refused("INVALID", "request must be a JSON object")
    method = req.get("method", "GET")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        raise _Refused("INVALID", f"unsupported method {str(method)[:20]!r} (one of "
                                  f"{', '.join(sorted(_METHODS))})")
    headers = req.get("headers") or {}
    if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise _Refused("INVALID", "headers must be an object of strings")
    for k, v in headers.items():
        if not k or any(c in k for c in "\r\n:\0 ") or any(c in v for c in "\r\n\0"):
            raise _Refused("INVALID", f"bad header {k[:100]!r}: no CR, LF or NUL allowed")
    headers = {k: v for k, v in headers.items() if k.lower() not in _HOST_HEADERS}
    timeout_ms = req.get("timeout_ms", state.timeout_ms)
    if isinstance(timeout_ms, bool) or not isinstance(timeout_ms, int) or timeout_ms <= 0:
        raise _Refused("INVALID", "timeout_ms must be a positive integer")
    end = min(time.monotonic() + min(timeout_ms, state.timeout_ms) / 1000, deadline)
    connector = None
    if "connector" in req:
        name = req["connector"]
        connector = state.connectors.get(name) if isinstance(name, str) else None
        if connector is None:
            raise _Refused("DENIED", f"connector {str(name)[:100]!r} is not in this plugin's "
                                     f"grant (granted: {', '.join(state.connectors) or 'none'})")
        path = req.get("path", "/")
        if not isinstance(path, str):
            raise _Refused("INVALID", "path must be a string")
        url = connector.url(path)
    else:
        raw_url = req.get("url")
        if not isinstance(raw_url, str):
            raise _Refused("INVALID", "request needs a 'url' (or a 'connector' and 'path')")
        url = raw_url
    return _Exchange(method.upper(), url, headers, body, connector, end)


def _target(url: str) -> tuple[str, str, int, str, str]:
    """(scheme, host, port, path, path?query) of an absolute http(s) URL."""
    if any(c in url for c in "\r\n\0 \t"):
        raise _Refused("INVALID", f"url has whitespace or control characters: {url[:200]!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise _Refused("INVALID", f"bad url {url[:200]!r}: {exc}") from None
    if parts.scheme not in _DEFAULT_PORT or not parts.hostname:
        raise _Refused("INVALID", f"url must be http(s)://host/..., got {url[:200]!r}")
    if parts.username or parts.password:
        raise _Refused("INVALID", "credentials in the URL are not allowed; use a connector")
    path = parts.path or "/"
    return (parts.scheme, parts.hostname.lower().rstrip("."),
            port or _DEFAULT_PORT[parts.scheme], path,
            path + (f"?{parts.query}" if parts.query else ""))


def _resolve(state: _State, host: str, port: int, ex: _Exchange) -> list[str]:
    literal = _ip(host)
    if literal is not None:
        return [str(literal)]
    future: Future[list[Any]] = _resolver.submit(socket.getaddrinfo, host, port,
                                                 type=socket.SOCK_STREAM)
    try:
        infos = future.result(timeout=max(ex.left(), 0.0))
    except FutureTimeout:
        # The lookup keeps the request's slot until it really ends, so a plugin cannot
        # pile up lookups that outlive their calls.
        if ex.slot is not None:
            ex.slot.hand_off(future)
        raise _Refused("UNAVAILABLE", f"timeout resolving {host}") from None
    except OSError as exc:
        raise _Refused("UNAVAILABLE", f"cannot resolve {host}: {exc.strerror or exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _address(state: _State, ex: _Exchange, scheme: str, host: str, port: int,
             under_connector: bool) -> str:
    """The first address of ``host`` the grant lets the plugin reach."""
    named = {r.literal for r in state.rules if r.literal is not None}
    networks = state.networks + (ex.connector.allow_addresses if under_connector and ex.connector
                                 else ())
    if under_connector and ex.connector is not None:
        base_ip = _ip(ex.connector._base[1])
        if base_ip is not None:
            named.add(base_ip)
    refused = []
    for text in _resolve(state, host, port, ex):
        ip = ipaddress.ip_address(text.split("%", 1)[0])
        if _public(ip) or ip in named or any(ip in n for n in networks):
            return text
        refused.append(text)
    raise _Refused("DENIED", f"{host} resolves to {', '.join(refused[:4])}, a private, "
                             "loopback, link-local or reserved address; the grant must name it "
                             "(an IP in allow_hosts, or a network in allow_addresses)")


def _exchange(state: _State, ex: _Exchange, secret: Callable[[str], bytes | None]
              ) -> tuple[int, dict[str, str], bytes]:
    """The response's (status, headers, body), redirects followed."""
    method, url, body = ex.method, ex.url, ex.body
    headers = dict(ex.headers)
    origin = None
    for hop in range(state.max_redirects + 1):
        scheme, host, port, path, target = _target(url)
        under = ex.connector is not None and ex.connector.covers(scheme, host, port, path)
        if not under and not any(r.matches(scheme, host, port) for r in state.rules):
            what = "a redirect to " if hop else ""
            raise _Refused("DENIED", f"{what}{scheme}://{host}:{port} is not in the grant's "
                                     "allow_hosts")
        if origin is not None and origin != (scheme, host, port):
            headers = {k: v for k, v in headers.items() if k.lower() not in _ORIGIN_HEADERS}
        origin = (scheme, host, port)
        send = dict(headers)
        if under and ex.connector is not None:
            send, target = _authorize(ex, send, target, secret)
        ip = _address(state, ex, scheme, host, port, under)
        default = port == _DEFAULT_PORT[scheme]
        send["Host"] = (f"[{host}]" if ":" in host else host) + ("" if default else f":{port}")
        status, resp_headers, data = _send(state, ex, state.pool(scheme, ip, port, host),
                                           method, target, send, body, host, port)
        location = resp_headers.get("location")
        if status in _REDIRECTS and location and hop < state.max_redirects:
            url = urljoin(url, location.split(",")[0].strip())
            if status == 303 or (status in (301, 302) and method == "POST"):
                method, body = ("GET" if method != "HEAD" else "HEAD"), b""
            continue
        return status, resp_headers, data
    raise _Refused("UNAVAILABLE", "too many redirects")  # pragma: no cover - loop returns


def _authorize(ex: _Exchange, headers: dict[str, str], target: str,
               secret: Callable[[str], bytes | None]) -> tuple[dict[str, str], str]:
    connector = ex.connector
    assert connector is not None
    for k, v in connector.headers.items():
        headers = {h: x for h, x in headers.items() if h.lower() != k.lower()}
        headers[k] = v
    if connector.auth == "none" or connector.secret is None:
        return headers, target
    value = secret(connector.secret)
    if value is None:
        raise _Refused("UNAVAILABLE", f"connector {connector.name!r} needs secret "
                                      f"{connector.secret!r}, which is not set (omnicore "
                                      "secrets set)")
    add, params, cut = connector.credentials(value)
    ex.cut.extend(c for c in cut if c)
    lowered = {k.lower() for k in add}
    headers = {k: v for k, v in headers.items() if k.lower() not in lowered} | add
    if params:
        target += ("&" if "?" in target else "?") + urlencode(params)
    return headers, target


def _send(state: _State, ex: _Exchange, pool: urllib3.HTTPConnectionPool, method: str,
          target: str, headers: dict[str, str], body: bytes, host: str, port: int,
          ) -> tuple[int, dict[str, str], bytes]:
    left = ex.left()
    if left <= 0:
        raise _Refused("UNAVAILABLE", "timeout before connecting")
    try:
        resp = pool.urlopen(method, target, body=body or None, headers=headers, redirect=False,
                            retries=False, preload_content=False, decode_content=False,
                            assert_same_host=False, release_conn=False,
                            timeout=urllib3.Timeout(connect=left, read=left))
    except urllib3.exceptions.NewConnectionError as exc:  # (a TimeoutError subclass)
        raise _Refused("UNAVAILABLE", f"cannot connect to {host}:{port}: "
                                      f"{str(exc).rpartition(': ')[2][:200]}") from None
    except urllib3.exceptions.TimeoutError:
        raise _Refused("UNAVAILABLE", f"timeout waiting for {host}:{port}") from None
    except (Urllib3Error, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise _Refused("UNAVAILABLE", f"{host}:{port}: {type(reason).__name__}: "
                                      f"{str(reason)[:300]}") from None
    complete = False
    try:
        length = resp.headers.get("content-length", "")
        if length.isdigit() and int(length) > state.max_response:
            raise _Refused("TOO_LARGE", f"response of {length} bytes exceeds "
                                        f"max_response_bytes ({state.max_response})")
        chunks: list[bytes] = []
        total = 0
        while True:
            left = ex.left()
            if left <= 0:
                raise _Refused("UNAVAILABLE", f"timeout reading the response of {host}:{port}")
            sock = getattr(resp.connection, "sock", None)
            if sock is not None:
                sock.settimeout(left)
            try:
                # read1: at most one recv, so a drip of bytes cannot keep one read going.
                chunk = resp.read1(min(_CHUNK, state.max_response + 1 - total))
            except (urllib3.exceptions.TimeoutError, TimeoutError):
                raise _Refused("UNAVAILABLE",
                               f"timeout reading the response of {host}:{port}") from None
            except (Urllib3Error, OSError) as exc:
                raise _Refused("UNAVAILABLE", f"{host}:{port}: reading the response failed: "
                                              f"{type(exc).__name__}") from None
            if not chunk:
                break
            total += len(chunk)
            if total > state.max_response:
                raise _Refused("TOO_LARGE", f"response exceeds max_response_bytes "
                                            f"({state.max_response})")
            chunks.append(chunk)
        complete = True
    finally:
        if not complete:
            resp.close()
        resp.release_conn()
    merged: dict[str, str] = {}
    for name, value in resp.headers.items():
        key = name.lower()
        merged[key] = f"{merged[key]}, {value}" if key in merged else value
    return resp.status, merged, b"".join(chunks)


def _redact(data: bytes, cut: Sequence[str]) -> bytes:
    for text in cut:
        if len(text) >= 4:  # shorter strings would shred ordinary output
            data = data.replace(text.encode(), _REDACTED.encode())
    return data


def _request(state: _State, mem: GuestMemory, rp: int, rl: int, bp: int, bl: int) -> int:
    mem.check(rp, rl, "request")
    mem.check(bp, bl, "body")
    ex: _Exchange | None = None
    try:
        if rl > MAX_REQUEST_JSON:
            raise _Refused("TOO_LARGE", f"request JSON is larger than {MAX_REQUEST_JSON} bytes")
        if bl > state.max_request:
            raise _Refused("TOO_LARGE", f"body of {bl} bytes exceeds max_request_bytes "
                                        f"({state.max_request})")
        ex = _parse(state, mem.read(rp, rl, "request"), mem.read(bp, bl, "body"), mem.deadline)
        status, headers, body = _run(state, ex)
    except _Refused as exc:
        message = f"{exc.status}: {exc}".encode()
        return mem.alloc_result(_redact(message, ex.cut if ex else ()), error=True)
    head = json.dumps({"status": status, "headers": headers}, separators=(",", ":"),
                      ensure_ascii=False).encode()
    # Cut head and body apart: a cut changes lengths, and the block starts with the head's.
    head = _redact(head, ex.cut)
    return mem.alloc_result(len(head).to_bytes(4, "little") + head + _redact(body, ex.cut))


def _run(state: _State, ex: _Exchange) -> tuple[int, dict[str, str], bytes]:
    """One parsed exchange, holding one of the plugin's ``max_concurrent`` slots."""
    if not state.slots.acquire(blocking=False):
        raise _Refused("QUOTA", f"{state.max_concurrent} requests of this plugin are already "
                                "in flight (grant.http.max_concurrent)")
    ex.slot = _Slot(state.slots)
    try:
        return _exchange(state, ex, _secret_reader(state))
    finally:
        if not ex.slot.handed_off:
            ex.slot.release()


@dataclass(frozen=True)
class Response:
    """What :meth:`Client.request` returns: headers lower-cased, repeats joined by ", "."""

    status: int
    headers: dict[str, str]
    body: bytes


class Client:
    """The checked client behind ``omnicore:http``, for host code that serves a plugin's
    requests through another ABI (the Extism host functions): the same allow-list, address
    checks, pinned DNS, re-checked redirects, size limits, ``max_concurrent`` and deadline as
    a plugin's ``request`` — one grant, one set of rules. Connectors are not available here.
    """

    def __init__(self, ctx: PluginContext) -> None:
        _check_grant(ctx.grant)
        self._state = _State(ctx, {}, None)

    @property
    def max_response_bytes(self) -> int:
        return self._state.max_response

    def request(self, method: str, url: str, headers: Mapping[str, str], body: bytes,
                deadline: float) -> Response:
        """Send one request (``deadline`` in ``time.monotonic()`` seconds, the calling plugin
        call's); raise :class:`HttpRefused` when the grant refuses it or it fails."""
        state = self._state
        if len(body) > state.max_request:
            raise _Refused("TOO_LARGE", f"body of {len(body)} bytes exceeds max_request_bytes "
                                        f"({state.max_request})")
        raw = json.dumps({"method": method, "url": url, "headers": dict(headers)}).encode()
        if len(raw) > MAX_REQUEST_JSON:
            raise _Refused("TOO_LARGE", f"request is larger than {MAX_REQUEST_JSON} bytes")
        ex = _parse(state, raw, body, deadline)
        status, resp_headers, data = _run(state, ex)
        return Response(status, resp_headers, data)


def _secret_reader(state: _State) -> Callable[[str], bytes | None]:
    def read(name: str) -> bytes | None:
        if state.secrets is None:
            return None
        try:
            return state.secrets().get(name)
        except Exception as exc:  # a broken store: say which, never the value
            raise _Refused("UNAVAILABLE", f"the secret store failed: "
                                          f"{type(exc).__name__}") from None
    return read


def capability(connectors: Callable[[], Mapping[str, Connector]] = dict,
               secrets: Callable[[], SecretStore] | None = None) -> Capability:
    """The ``http`` capability with the app's connectors and secret store."""
    def bind(ctx: PluginContext) -> _State:
        return _State(ctx, connectors(), secrets)

    return Capability(
        name="http",
        description="outbound HTTP to the hosts in the grant and the app's connectors",
        functions=(HostFunction("request", ("ptr", "len", "ptr", "len"), ("i64",), _request),),
        bind=bind,
        check_grant=_check_grant,
    )


#: For plugin hosts without an app: no connectors.
CAPABILITY = capability()


class HttpApp(Protocol):
    """What the http capability needs of an app (``OmniApp`` has it)."""

    @property
    def connectors(self) -> Mapping[str, Connector]: ...

    @property
    def secrets(self) -> SecretStore: ...


def for_app(app: HttpApp) -> Capability:
    """The http capability with ``app.connectors`` and ``app.secrets``."""
    return capability(lambda: app.connectors, lambda: app.secrets)
