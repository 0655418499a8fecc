"""The pinned client: one checked exchange, redirects re-checked, bounded in bytes and time.

For the first URL and again for every redirect:

* its scheme, host and port must match one of the policy's rules, or lie under a granted
  connector's base URL;
* the host resolves the name itself and refuses every address the :class:`AddressPolicy`
  does not admit (a connector's own IP literal and ``allow_addresses`` count only for URLs
  under it);
* the connection goes to the address that was checked (a urllib3 pool per address, with the
  name kept for ``Host``, SNI and certificate checks), so DNS cannot answer differently
  between the check and the connect.

What a caller can make the host spend is bounded by the policy: requests in flight
(``max_concurrent``; a DNS lookup that outlives its request keeps the slot until it ends), the
request, the response (counted as it streams in, never decompressed by the host), and time:
``timeout_ms`` for the whole exchange, redirects and redaction included, and never past the
caller's deadline — every socket read waits at most for what is left.

Credentials (a connector's, and secret references in headers) go only to URLs under the
connector's base URL, and are cut out of everything returned (:mod:`omnicore.egress.redact`),
error messages included.
"""

from __future__ import annotations

import logging
import math
import re
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import urllib3
from urllib3.exceptions import HTTPError as Urllib3Error

from omnicore import telemetry
from omnicore.egress.connectors import Connector
from omnicore.egress.policy import Policy
from omnicore.egress.redact import Redactor
from omnicore.egress.refused import Refused, SecretMissing
from omnicore.egress.request import MAX_REQUEST_JSON, Request, Response, SecretRef
from omnicore.egress.rules import DEFAULT_PORT, ip_of
from omnicore.httpfields import NAME_RULE, VALUE_RULE, is_name, is_value

__all__ = ["METHODS", "Client", "SecretReader"]

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
#: Reads one secret's value (None: not set).
SecretReader = Callable[[str], "bytes | None"]
# Framing headers are the host's to write; a caller setting them could smuggle requests.
_HOST_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection",
                           "te", "upgrade", "proxy-authorization", "trailer", "keep-alive"})
# Sent on to a redirect only when it stays on the same origin (as browsers do).
_ORIGIN_HEADERS = frozenset({"authorization", "cookie"})
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024
_POOLS_PER_CLIENT = 8

# Name lookups run here so that a slow resolver cannot hold a request past its deadline.
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


class _Slot:
    """One of the client's ``max_concurrent`` request slots, released exactly once."""

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


@dataclass
class _Exchange:
    method: str
    url: str
    headers: dict[str, str]
    secret_headers: dict[str, tuple[str | SecretRef, ...]]
    body: bytes
    connector: Connector | None
    end: float                       # time.monotonic() by which it must be over
    redactor: Redactor = field(default_factory=Redactor)
    slot: _Slot | None = None

    def left(self) -> float:
        return self.end - time.monotonic()


def _target(url: str) -> tuple[str, str, int, str, str]:
    """(scheme, host, port, path, path?query) of an absolute http(s) URL."""
    if any(c in url for c in "\r\n\0 \t"):
        raise Refused("INVALID", f"url has whitespace or control characters: {url[:200]!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise Refused("INVALID", f"bad url {url[:200]!r}: {exc}") from None
    if parts.scheme not in DEFAULT_PORT or not parts.hostname:
        raise Refused("INVALID", f"url must be http(s)://host/..., got {url[:200]!r}")
    if parts.username or parts.password:
        raise Refused("INVALID", "credentials in the URL are not allowed; use a connector")
    path = parts.path or "/"
    return (parts.scheme, parts.hostname.lower().rstrip("."),
            port or DEFAULT_PORT[parts.scheme], path,
            path + (f"?{parts.query}" if parts.query else ""))


class Client:
    """Outbound HTTP under one :class:`Policy`: a plugin's grant, or one connector's.

    Thread-safe; keeps a few connection pools (one per checked address) and the policy's
    ``max_concurrent`` slots. ``secrets`` reads the credentials of connectors and the secret
    references of headers; without it, a request that needs one is refused. ``who`` names the
    caller in refusals.
    """

    def __init__(self, policy: Policy, secrets: SecretReader | None = None,
                 who: str = "this plugin") -> None:
        self.policy = policy
        self.who = who
        self._secrets = secrets
        self._slots = threading.BoundedSemaphore(policy.max_concurrent)
        self._pools: OrderedDict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = \
            OrderedDict()
        self._lock = threading.Lock()

    def send(self, request: Request, deadline: float = math.inf) -> Response:
        """Send ``request`` (``deadline`` in ``time.monotonic()`` seconds, the caller's);
        :class:`Refused` when the policy refuses it or it fails, its message redacted."""
        ex = self._prepare(request, deadline)
        if telemetry.ON:  # a client span by host; its traceparent goes with the request
            with telemetry.outbound_http(ex.method, ex.url, ex.headers) as answered:
                response = self._send_prepared(ex)
                answered(response.status)
                return response
        return self._send_prepared(ex)

    def _send_prepared(self, ex: _Exchange) -> Response:
        if not self._slots.acquire(blocking=False):
            raise Refused("QUOTA", f"{self.policy.max_concurrent} requests of {self.who} are "
                                   "already in flight (grant.http.max_concurrent)")
        ex.slot = _Slot(self._slots)
        try:
            status, headers, body = self._exchange(ex)
            red = ex.redactor
            try:
                clean = {red.cut_text(k, ex.end): red.cut_text(v, ex.end)
                         for k, v in headers.items()}
                return Response(status, clean, red.cut(body, ex.end), red)
            except TimeoutError:
                raise Refused("UNAVAILABLE", "timeout: the answer was not redacted in "
                                             "time") from None
        except Refused as exc:
            exc.args = (ex.redactor.cut_text(str(exc)),)
            raise
        finally:
            if not ex.slot.handed_off:
                ex.slot.release()

    def _prepare(self, req: Request, deadline: float) -> _Exchange:
        policy = self.policy
        if req.method.upper() not in METHODS:
            raise Refused("INVALID", f"unsupported method {req.method[:20]!r} (one of "
                                     f"{', '.join(sorted(METHODS))})")
        if len(req.body) > policy.max_request_bytes:
            raise Refused("TOO_LARGE", f"body of {len(req.body)} bytes exceeds "
                                       f"max_request_bytes ({policy.max_request_bytes})")
        size = len(req.url or req.path) + sum(
            len(k) + sum(len(p) if isinstance(p, str) else 0 for p in
                         ((v,) if isinstance(v, str) else v))
            for k, v in req.headers.items())
        if size > MAX_REQUEST_JSON:
            raise Refused("TOO_LARGE", f"request is larger than {MAX_REQUEST_JSON} bytes")
        headers: dict[str, str] = {}
        secret_headers: dict[str, tuple[str | SecretRef, ...]] = {}
        for k, v in req.headers.items():
            text = v if isinstance(v, str) else "".join(p for p in v if isinstance(p, str))
            if not is_name(k):
                raise Refused("INVALID", f"bad header name {k[:100]!r}: {NAME_RULE}")
            if not is_value(text):
                raise Refused("INVALID", f"bad header {k[:100]!r}: {VALUE_RULE}")
            if k.lower() in _HOST_HEADERS:
                continue
            if isinstance(v, str):
                headers[k] = v
            else:
                secret_headers[k] = v
        timeout_ms = policy.timeout_ms if req.timeout_ms is None else req.timeout_ms
        end = min(time.monotonic() + min(timeout_ms, policy.timeout_ms) / 1000, deadline)
        connector = None
        if req.connector is not None:
            connector = policy.connectors.get(req.connector)
            if connector is None:
                raise Refused("DENIED", f"connector {req.connector[:100]!r} is not granted "
                                        f"(granted: {', '.join(policy.connectors) or 'none'})")
            url = connector.url(req.path)
        elif req.url is None:
            raise Refused("INVALID", "request needs a 'url' (or a 'connector' and 'path')")
        else:
            url = req.url
        if secret_headers and connector is None:
            raise Refused("INVALID", "secret references in headers need a connector")
        return _Exchange(req.method.upper(), url, headers, secret_headers, req.body, connector,
                         end)

    def _exchange(self, ex: _Exchange) -> tuple[int, dict[str, str], bytes]:
        """The response's (status, headers, body), redirects followed."""
        method, url, body = ex.method, ex.url, ex.body
        headers = dict(ex.headers)
        origin = None
        for hop in range(self.policy.max_redirects + 1):
            scheme, host, port, path, target = _target(url)
            under = ex.connector is not None and ex.connector.covers(scheme, host, port, path)
            if not under and not any(r.matches(scheme, host, port) for r in self.policy.rules):
                what = "a redirect to " if hop else ""
                raise Refused("DENIED", f"{what}{scheme}://{host}:{port} is not in the grant's "
                                        "allow_hosts")
            if origin is not None and origin != (scheme, host, port):
                headers = {k: v for k, v in headers.items()
                           if k.lower() not in _ORIGIN_HEADERS}
            origin = (scheme, host, port)
            send = dict(headers)
            if under:
                send, target = self._authorize(ex, send, target)
            ip = self._address(ex, scheme, host, port, under)
            default = port == DEFAULT_PORT[scheme]
            send["Host"] = (f"[{host}]" if ":" in host else host) + ("" if default else f":{port}")
            connections = self._connection_pool(scheme, ip, port, host)
            status, resp_headers, data = self._send(ex, connections, method, target, send,
                                                    body, host, port)
            location = resp_headers.get("location")
            if status in _REDIRECTS and location and hop < self.policy.max_redirects:
                url = urljoin(url, location.split(",")[0].strip())
                if status == 303 or (status in (301, 302) and method == "POST"):
                    method, body = ("GET" if method != "HEAD" else "HEAD"), b""
                continue
            return status, resp_headers, data
        raise Refused("UNAVAILABLE", "too many redirects")  # pragma: no cover - loop returns

    def _secret(self, name: str, needed_by: str) -> str:
        if self._secrets is None:
            value = None
        else:
            try:
                value = self._secrets(name)
            except Exception as exc:  # a broken store: say which, never the value
                raise Refused("UNAVAILABLE", f"the secret store failed: "
                                             f"{type(exc).__name__}") from None
        if value is None:
            raise SecretMissing(name, f"{needed_by} needs secret {name!r}, which is not set "
                                      f"(omnicore secrets set {name})")
        return value.decode("utf-8", "replace")

    def _authorize(self, ex: _Exchange, headers: dict[str, str], target: str
                   ) -> tuple[dict[str, str], str]:
        """The connector's fixed headers, credentials and resolved secret headers (all of
        which only ever go to URLs under its base URL)."""
        connector = ex.connector
        assert connector is not None
        for k, v in connector.headers.items():
            headers = {h: x for h, x in headers.items() if h.lower() != k.lower()}
            headers[k] = v
        add: dict[str, str] = {}
        for k, parts in ex.secret_headers.items():
            values = {p.name: self._secret(p.name, f"header {k!r}") for p in parts
                      if isinstance(p, SecretRef)}
            ex.redactor.add(*values.values())
            text = "".join(values[p.name] if isinstance(p, SecretRef) else p for p in parts)
            if not is_value(text):
                raise Refused("INVALID", f"header {k!r}: a secret it uses breaks the rule "
                                         f"that {VALUE_RULE}")
            add[k] = text
        params: dict[str, str] = {}
        if connector.auth != "none" and connector.secret is not None:
            value = self._secret(connector.secret, f"connector {connector.name!r}")
            creds, params, cut = connector.credentials(value.encode())
            ex.redactor.add(*cut)
            add.update(creds)
        lowered = {k.lower() for k in add}
        headers = {k: v for k, v in headers.items() if k.lower() not in lowered} | add
        if params:
            target += ("&" if "?" in target else "?") + urlencode(params)
        return headers, target

    def _resolve(self, host: str, port: int, ex: _Exchange) -> list[str]:
        literal = ip_of(host)
        if literal is not None:
            return [str(literal)]
        future: Future[list[Any]] = _resolver.submit(socket.getaddrinfo, host, port,
                                                     type=socket.SOCK_STREAM)
        try:
            infos = future.result(timeout=max(ex.left(), 0.0))
        except FutureTimeout:
            # The lookup keeps the request's slot until it really ends, so a caller cannot
            # pile up lookups that outlive their requests.
            if ex.slot is not None:
                ex.slot.hand_off(future)
            raise Refused("UNAVAILABLE", f"timeout resolving {host}") from None
        except OSError as exc:
            raise Refused("UNAVAILABLE", f"cannot resolve {host}: "
                                         f"{exc.strerror or exc}") from None
        return list(dict.fromkeys(str(info[4][0]) for info in infos))

    def _address(self, ex: _Exchange, scheme: str, host: str, port: int, under: bool) -> str:
        """The first address of ``host`` the policy lets the request reach."""
        policy = self.policy.addresses
        if under and ex.connector is not None:
            policy = policy.widened(ex.connector.named_address, ex.connector.allow_addresses)
        refused = []
        for text in self._resolve(host, port, ex):
            ip = ip_of(text.split("%", 1)[0])
            if ip is not None and policy.admits(ip):
                return text
            refused.append(text)
        raise Refused("DENIED", f"{host} resolves to {', '.join(refused[:4])}, a private, "
                                "loopback, link-local or reserved address; the grant must name "
                                "it (an IP in allow_hosts, or a network in allow_addresses)")

    def _connection_pool(self, scheme: str, ip: str, port: int,
                         host: str) -> urllib3.HTTPConnectionPool:
        key = (scheme, ip, port, host)
        cap = self.policy.max_concurrent
        with self._lock:
            found = self._pools.get(key)
            if found is not None:
                self._pools.move_to_end(key)
                return found
            if scheme == "https":
                found = urllib3.HTTPSConnectionPool(
                    ip, port, maxsize=cap, retries=False, cert_reqs="CERT_REQUIRED",
                    assert_hostname=host, server_hostname=host)
            else:
                found = urllib3.HTTPConnectionPool(ip, port, maxsize=cap, retries=False)
            self._pools[key] = found
            old = self._pools.popitem(last=False)[1] if len(self._pools) > _POOLS_PER_CLIENT \
                else None
        if old is not None:
            old.close()
        return found

    def _send(self, ex: _Exchange, pool: urllib3.HTTPConnectionPool, method: str, target: str,
              headers: dict[str, str], body: bytes, host: str, port: int,
              ) -> tuple[int, dict[str, str], bytes]:
        left = ex.left()
        limit = self.policy.max_response_bytes
        if left <= 0:
            raise Refused("UNAVAILABLE", "timeout before connecting")
        try:
            resp = pool.urlopen(method, target, body=body or None, headers=headers,
                                redirect=False, retries=False, preload_content=False,
                                decode_content=False, assert_same_host=False,
                                release_conn=False,
                                timeout=urllib3.Timeout(connect=left, read=left))
        except urllib3.exceptions.NewConnectionError as exc:  # (a TimeoutError subclass)
            raise Refused("UNAVAILABLE", f"cannot connect to {host}:{port}: "
                                         f"{str(exc).rpartition(': ')[2][:200]}") from None
        except urllib3.exceptions.TimeoutError:
            raise Refused("UNAVAILABLE", f"timeout waiting for {host}:{port}") from None
        except (Urllib3Error, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise Refused("UNAVAILABLE", f"{host}:{port}: {type(reason).__name__}: "
                                         f"{str(reason)[:300]}") from None
        complete = False
        try:
            length = resp.headers.get("content-length", "")
            if length.isdecimal() and int(length) > limit:
                raise Refused("TOO_LARGE", f"response of {length} bytes exceeds "
                                           f"max_response_bytes ({limit})")
            chunks: list[bytes] = []
            total = 0
            while True:
                left = ex.left()
                if left <= 0:
                    raise Refused("UNAVAILABLE", f"timeout reading the response of "
                                                 f"{host}:{port}")
                sock = getattr(resp.connection, "sock", None)
                if sock is not None:
                    sock.settimeout(left)
                try:
                    # read1: at most one recv, so a drip of bytes cannot keep one read going.
                    chunk = resp.read1(min(_CHUNK, limit + 1 - total))
                except (urllib3.exceptions.TimeoutError, TimeoutError):
                    raise Refused("UNAVAILABLE", f"timeout reading the response of "
                                                 f"{host}:{port}") from None
                except (Urllib3Error, OSError) as exc:
                    raise Refused("UNAVAILABLE", f"{host}:{port}: reading the response "
                                                 f"failed: {type(exc).__name__}") from None
                if not chunk:
                    break
                total += len(chunk)
                if total > limit:
                    raise Refused("TOO_LARGE", f"response exceeds max_response_bytes "
                                               f"({limit})")
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
