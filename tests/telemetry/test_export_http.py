"""How spans reach the collector (omnicore.telemetry._http, issue 62, item 4): the SDK's
OTLP/HTTP client (its retries, headers, compression, timeout) posting over one kept-alive
HTTP/1.1 connection of its own instead of a ``requests`` session; TLS as the SDK's variables set
it; the SDK's own transport kept where a proxy or a credential provider is configured. A real
HTTP(S) server on loopback decoding the protobuf."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.http.transport._requests import RequestsHTTPTransport
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from omnicore import telemetry
from omnicore.telemetry import Settings, _http, _sdk
from tests.registryserver import make_ca


class Collector:
    """An OTLP/HTTP traces endpoint that counts the connections it was opened on and can
    close each after its answer (``close``), as a proxy or a restarting collector does."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.spans: list[str] = []
        self.connections = 0
        self.headers: list[dict[str, str]] = []
        self.close = False
        self.lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                with outer.lock:
                    outer.connections += 1

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest.FromString(body)
                with outer.lock:
                    outer.headers.append({k.lower(): v for k, v in self.headers.items()})
                    outer.spans += [s.name for r in request.resource_spans
                                    for ss in r.scope_spans for s in ss.spans]
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                if outer.close:
                    self.send_header("Connection", "close")
                    self.close_connection = True
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        scheme = "https" if tls is not None else "http"
        self.endpoint = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/v1/traces"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def collector() -> Iterator[Collector]:
    c = Collector()
    yield c
    c.stop()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy",
                 "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def _traced(endpoint: str, names: list[str], headers: dict[str, str] | None = None) -> None:
    """Tracing on towards ``endpoint`` (the default exporter), a span per name, each
    exported on its own, then off."""
    telemetry.start(Settings(service_name="export", traces_endpoint=endpoint,
                             headers=headers or {}), "i")
    try:
        for name in names:
            with telemetry.span(name):
                pass
            telemetry.flush()
    finally:
        telemetry.reset()


def test_exports_share_one_kept_connection_through_the_sdks_client(
        collector: Collector, clean_env: None) -> None:
    telemetry.start(Settings(service_name="export", traces_endpoint=collector.endpoint), "i")
    try:
        client = _sdk._exporter._client  # type: ignore[union-attr]
        assert isinstance(client._transport, _http.ClientTransport)
    finally:
        telemetry.reset()
    _traced(collector.endpoint, ["one", "two", "three"], {"x-tenant": "blue"})
    assert collector.spans == ["one", "two", "three"]
    assert collector.connections == 1  # one connection for the three exports
    sent = collector.headers[0]
    assert sent["content-type"] == "application/x-protobuf" and sent["x-tenant"] == "blue"
    assert list(sent).count("content-type") == 1


def test_a_connection_the_collector_closed_is_opened_again(
        collector: Collector, clean_env: None) -> None:
    collector.close = True  # every answer ends its connection
    _traced(collector.endpoint, ["one", "two", "three"])
    assert collector.spans == ["one", "two", "three"]
    assert collector.connections == 3


def test_a_collector_gone_is_an_error_result_never_an_exception(clean_env: None) -> None:
    transport = _http.ClientTransport()
    c = Collector()
    endpoint = c.endpoint
    c.stop()  # nothing listens there now
    result = transport.request("POST", endpoint, data=b"", timeout=5)
    assert result.status_code is None and result.error is not None
    assert transport.is_connection_error(result.error)


def test_tls_is_verified_against_the_sdks_certificate_variable(
        tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    ca, cert, key = make_ca(tmp_path)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    c = Collector(tls=context)
    try:
        # Not trusted: the private CA is nobody's default; nothing arrives.
        untrusted = _http.lean_transport(c.endpoint, {})
        assert untrusted is not None
        refused = untrusted.request("POST", c.endpoint, data=b"", timeout=5)
        assert isinstance(refused.error, ssl.SSLCertVerificationError)
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", str(ca))
        _traced(c.endpoint, ["secure"])
        assert c.spans == ["secure"]
    finally:
        c.stop()


@pytest.mark.parametrize("environ", [
    {"HTTP_PROXY": "http://proxy.example:3128"},
    {"OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER": "my_session"},
])
def test_a_proxy_or_a_credential_provider_keeps_the_sdks_transport(
        environ: dict[str, str], clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert _http.lean_transport("http://collector.example:4318/v1/traces", environ) is None
    if "HTTP_PROXY" in environ:  # (a provider the test cannot name stays the SDK's to load)
        exporter = _sdk._otlp_exporter(Settings(
            service_name="x", traces_endpoint="http://collector.example:4318/v1/traces"))
        assert isinstance(exporter._client._transport, RequestsHTTPTransport)
        exporter.shutdown()
    monkeypatch.setenv("NO_PROXY", "collector.example")
    if "HTTP_PROXY" in environ:  # bypassed for the collector: the kept connection again
        assert _http.lean_transport("http://collector.example:4318/v1/traces", {}) is not None


def test_credentials_the_sdks_session_would_send_keep_its_transport(tmp_path: Path) -> None:
    """The SDK's requests session sends Basic authorization from the endpoint's userinfo or a
    .netrc entry for its host; the host's own transport sends neither, so it is not used."""
    url = "http://collector.example:4318/v1/traces"
    assert _http.lean_transport(url, {}) is not None
    assert _http.lean_transport("http://user:pw@collector.example:4318/v1/traces", {}) is None
    assert _http.lean_transport("http://user@collector.example:4318/v1/traces", {}) is None
    rc = tmp_path / "netrc"
    rc.write_text("machine collector.example login u password p\n")
    assert _http.lean_transport(url, {"NETRC": str(rc)}) is None
    assert _http.lean_transport("http://other.example/v1/traces", {"NETRC": str(rc)}) \
        is not None
    rc.write_text("bogus token\n")  # (requests reads no credentials from what it cannot parse)
    assert _http.lean_transport(url, {"NETRC": str(rc)}) is not None


def test_without_the_c_encoder_the_sdks_encoder_sends_the_spans(
        collector: Collector, clean_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host installed without a compiler (omnicore.telemetry._otlpenc not built) hands its
    spans to the SDK's OTLP/HTTP exporter as ``ReadableSpan``s: the collector gets them all
    the same."""
    from omnicore.telemetry import _otlp

    monkeypatch.setattr(_otlp, "AVAILABLE", False)
    _traced(collector.endpoint, ["one", "two"])
    assert collector.spans == ["one", "two"]
