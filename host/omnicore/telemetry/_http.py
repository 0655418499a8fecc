"""The OTLP/HTTP exporter's transport: one kept-alive ``http.client`` connection.

The SDK's OTLP/HTTP client (retries, backoff, ``Retry-After``, compression, headers,
timeout: ``OTEL_EXPORTER_OTLP_*``) sends through a transport; its default is ``requests``,
whose session machinery (hooks, cookies, proxies and CA paths looked up from the environment
on every post) cost the host more CPU than encoding the spans it carries. This one posts the
same bytes over one connection the export thread keeps, TLS as the SDK's transport sets it up
(``OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE``, ``..._CLIENT_KEY``, ``..._CLIENT_CERTIFICATE``).
It is used only where it changes nothing else: no proxy in the environment for the endpoint,
no credential provider (:func:`lean_transport` says None, and the SDK's default is kept).
"""

from __future__ import annotations

import http.client
import logging
import os
import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport

__all__ = ["ClientTransport", "lean_transport", "report_client_failures_ourselves"]

#: Variables naming a credential provider (a requests session of the operator's): the SDK's
#: transport is kept for them.
_PROVIDERS = ("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
              "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER")


class _Headers(dict[str, str]):
    """Response headers, looked up without regard to case (the keys are lower-cased)."""

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())


@dataclass(frozen=True, slots=True)
class ClientResult(BaseHTTPResult):
    body: bytes = b""
    head: Mapping[str, str] = field(default_factory=dict)

    def content(self) -> bytes:
        return self.body

    def headers(self) -> Mapping[str, str]:
        return self.head


class ClientTransport(BaseHTTPTransport):
    """POSTs over one ``http.client`` connection, opened on first use and again after an
    error (the SDK's client retries a connection error once at once)."""

    def __init__(self, *, verify: bool | str = True,
                 cert: str | tuple[str, str] | None = None) -> None:
        self._verify = verify
        self._cert = cert
        self._context: ssl.SSLContext | None = None
        self._conn: http.client.HTTPConnection | None = None
        self._origin: tuple[str, str, int | None] | None = None

    def _tls(self) -> ssl.SSLContext:
        if self._context is None:
            if self._verify is False:
                context = ssl._create_unverified_context()
            else:
                context = ssl.create_default_context(
                    cafile=self._verify if isinstance(self._verify, str) else None)
            if isinstance(self._cert, tuple):
                context.load_cert_chain(self._cert[0], self._cert[1])
            elif self._cert:
                context.load_cert_chain(self._cert)
            self._context = context
        return self._context

    def _connection(self, scheme: str, host: str, port: int | None,
                    timeout: float | None) -> http.client.HTTPConnection:
        origin = (scheme, host, port)
        if self._conn is None or self._origin != origin:
            self.close()
            if scheme == "https":
                self._conn = http.client.HTTPSConnection(host, port, timeout=timeout,
                                                         context=self._tls())
            else:
                self._conn = http.client.HTTPConnection(host, port, timeout=timeout)
            self._origin = origin
        elif self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)
        self._conn.timeout = timeout
        return self._conn

    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                timeout: float | None = None, data: bytes | None = None) -> BaseHTTPResult:
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        sent = dict(headers or {})  # the SDK's: content-type, user-agent, the operator's
        if not any(k.lower() == "content-type" for k in sent):
            sent["Content-Type"] = "application/x-protobuf"
        try:
            conn = self._connection(parts.scheme, parts.hostname or "", parts.port, timeout)
            conn.request(method, target, body=data, headers=sent)
            response = conn.getresponse()
            body = response.read()
            head = _Headers((k.lower(), v) for k, v in response.getheaders())
            if response.will_close:
                self.close()
            return ClientResult(status_code=response.status, reason=response.reason,
                                body=body, head=head)
        except Exception as exc:  # the SDK's client decides: retried, or logged
            self.close()
            return ClientResult(error=exc)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def is_connection_error(self, exception: Exception | None) -> bool:
        return isinstance(exception, (ConnectionError, TimeoutError, http.client.HTTPException,
                                      OSError))


def lean_transport(endpoint: str, environ: Mapping[str, str] | None = None
                   ) -> ClientTransport | None:
    """The transport for ``endpoint`` (the traces URL), TLS from the SDK's variables; None
    where the SDK's own must stay (a proxy for the endpoint, a credential provider, a scheme
    other than http(s))."""
    env = os.environ if environ is None else environ
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or any(env.get(v) for v in _PROVIDERS):
        return None
    proxies = urllib.request.getproxies_environment()
    bypass = getattr(urllib.request, "proxy_bypass_environment", None)  # (not in typeshed)
    if proxies.get(parts.scheme) and not (bypass and bypass(parts.hostname or "", proxies)):
        return None

    def first(*names: str) -> str | None:
        return next((env[n] for n in names if env.get(n)), None)

    verify: bool | str = first("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE",
                               "OTEL_EXPORTER_OTLP_CERTIFICATE") or True
    key = first("OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", "OTEL_EXPORTER_OTLP_CLIENT_KEY")
    certificate = first("OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
                        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE")
    cert = (certificate, key) if certificate and key else certificate
    return ClientTransport(verify=verify, cert=cert)


#: The loggers the OTLP/HTTP client writes through (its own module's, and the exporter's it
#: is given): a line for each retry and each batch given up, outside the host's log format
#: (Python's last-resort handler) and with no bound (24 lines in 50 s with the collector
#: away).
_CLIENT_LOGS = ("opentelemetry.exporter.otlp.common.http",
                "opentelemetry.exporter.otlp.proto.http.trace_exporter",
                "opentelemetry.exporter.otlp.proto.http.metric_exporter")
#: The client's retry and give-up lines (opentelemetry/exporter/otlp/common/http.py).
_REPORTED_LINES = ("Transient error ", "Failed to export ", "Shutdown in progress")


class _Reported(logging.Filter):
    """Drops the client's retry and give-up lines: what they say the host says itself, in
    its own log, once a minute with the count of what was lost (``Batcher``,
    ``MetricsExport``). Its other lines pass."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(_REPORTED_LINES))


_REPORTED = _Reported()


def report_client_failures_ourselves() -> None:
    """Silence the OTLP/HTTP client's retry and give-up lines (idempotent): the export's
    counters and one warning a minute of the host's replace them."""
    for name in _CLIENT_LOGS:
        logging.getLogger(name).addFilter(_REPORTED)
