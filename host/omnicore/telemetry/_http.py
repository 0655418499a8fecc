"""The OTLP/HTTP exporter's transport: one kept-alive HTTP/1.1 connection of its own.

The SDK's OTLP/HTTP client (retries, backoff, ``Retry-After``, compression, headers,
timeout: ``OTEL_EXPORTER_OTLP_*``) sends through a transport; its default is ``requests``,
whose session machinery (hooks, cookies, proxies and CA paths looked up from the environment
on every post) cost the host more CPU than encoding the spans it carries. This one posts the
same bytes over one connection the export thread keeps, TLS as the SDK's transport sets it up
(``OTEL_EXPORTER_OTLP_(TRACES_)CERTIFICATE``, ``..._CLIENT_KEY``, ``..._CLIENT_CERTIFICATE``).
It is used only where it changes nothing else: no proxy in the environment for the endpoint,
no credential provider, no credentials the SDK's session would send (the endpoint's userinfo,
a ``.netrc`` entry): :func:`lean_transport` says None, and the SDK's default is kept.

It speaks the one exchange it needs itself, as RFC 9112 frames it: a POST with a
``Content-Length`` (its head made once for the endpoint and headers, sent with the body in one
write), and the answer's status, fields and body, read by length, by chunks or to the close.
``http.client`` cost some 300 µs of the export thread's CPU a post (issue 62: 131 sending, 162
reading the answer's fields through the ``email`` package's parser; the thread runs every
70 ms under load, so its code is cold each time), more than joining 512 spans' bytes; this
one about 200 µs with the SDK's client around it. What a collector answers is input: a line,
the fields, the interim answers and the body are bounded (http.client's own bounds, and a body
no OTLP answer comes near); every step, each address's connect, the TLS handshake, the send
and the whole answer, is within the export's timeout from the request's start (the name's
resolution aside, as with requests and http.client; http.client's
was a timeout on each read, which a collector sending a byte at a time never met); a kept
connection with bytes waiting is not used again; and an answer past a bound, out of the
grammar or framed two ways is an error result, the connection closed: the SDK's client
retries it as a connection error (once at once, then with backoff within the timeout), then
drops the batch.
"""

from __future__ import annotations

import http.client
import logging
import netrc
import os
import re
import select
import socket
import ssl
import time
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.exporter.http.transport._base import BaseHTTPResult, BaseHTTPTransport

from omnicore.httpfields import NAME_RULE, VALUE_RULE, is_name, is_value

__all__ = ["ClientTransport", "lean_transport", "report_client_failures_ourselves"]

#: Variables naming a credential provider (a requests session of the operator's): the SDK's
#: transport is kept for them.
_PROVIDERS = ("OTEL_PYTHON_EXPORTER_OTLP_HTTP_CREDENTIAL_PROVIDER",
              "OTEL_PYTHON_EXPORTER_OTLP_HTTP_TRACES_CREDENTIAL_PROVIDER")

#: A line of the answer's head, its fields, and the 1xx answers before the final one:
#: http.client's bounds (_MAXLINE, _MAXHEADERS).
MAX_LINE = 65536
MAX_FIELDS = 100
MAX_INTERIM = 10
#: The answer's body: an ExportTraceServiceResponse is a count and a message.
MAX_BODY = 1 << 20
#: Chunks in a chunked body: each costs the export thread a few Python calls under the GIL
#: whatever its size (a megabyte of 1-byte chunks took a second of CPU).
MAX_CHUNKS = 1024

#: A request target's characters (RFC 3986's, and '%'): no space or control to split the line.
_TARGET = re.compile(r"[!#$%&'()*+,\-./0-9:;=?@A-Z\[\]_a-z~]+")


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


def _left(deadline: float | None) -> float | None:
    """What is left of ``deadline`` (None: no bound), a TimeoutError once it has passed."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the post to the collector passed the export's timeout "
                           "(OTEL_EXPORTER_OTLP_TIMEOUT)")
    return left


def _waiting(sock: socket.socket) -> bool:
    """Whether anything waits to be read on ``sock`` (bytes, or the peer's close): TLS
    records already decrypted, or the kernel's buffer, asked with poll (select refuses a
    descriptor past 1,023, which a busy host's sockets reach)."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])


def _ascii_host(host: str) -> str:
    """``host`` as it goes on the wire: an internationalised name in its IDNA form, encoded
    as the SDK's requests transport encodes it (the ``idna`` package, UTS 46: Python's own
    codec, IDNA 2003, sends ``straße.example`` to ``strasse.example``, another domain); a
    name it refuses is refused (ValueError), as requests refuses the URL."""
    if host.isascii():
        return host
    import idna  # (its tables are loaded only for a name that needs them)

    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValueError(f"cannot post to {host!r}: not a host name ({exc})") from None


class _Answer:
    """What the collector sends back, read from the socket against one deadline for the
    whole answer (``timeout`` from the request's start, the SDK's remaining time): a
    collector that trickles its answer a byte at a time cannot hold the export thread past
    it, as a timeout on each read would let it. (Bytes read past an answer end the
    connection: :meth:`ClientTransport.request`.)"""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.deadline: float | None = None

    def _more(self) -> bool:
        """Read what has come (at least a byte): False at the close."""
        if self.deadline is not None:
            self.sock.settimeout(_left(self.deadline))
        got = self.sock.recv(65536)
        self.buf += got
        return bool(got)

    def line(self, what: str) -> bytes:
        """One line (its CRLF or LF kept), at most :data:`MAX_LINE` bytes."""
        start = 0
        while (end := self.buf.find(b"\n", start)) < 0:
            if len(self.buf) > MAX_LINE:
                raise http.client.LineTooLong(what)
            start = len(self.buf)
            if not self._more():
                raise http.client.RemoteDisconnected(f"the collector closed the connection "
                                                     f"within the answer's {what}")
        if end >= MAX_LINE:
            raise http.client.LineTooLong(what)
        line = bytes(self.buf[:end + 1])
        del self.buf[:end + 1]
        return line

    def exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._more():
                raise http.client.IncompleteRead(bytes(self.buf), n - len(self.buf))
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def to_close(self) -> bytes:
        """The rest, to the close, at most :data:`MAX_BODY` bytes."""
        while self._more():
            if len(self.buf) > MAX_BODY:
                raise http.client.HTTPException(f"the collector's answer is past {MAX_BODY} "
                                                "bytes")
        data = bytes(self.buf)
        self.buf.clear()
        return data


def _fields(reader: _Answer) -> _Headers:
    """The fields of a head or a trailer section, to its empty line: names lower-cased, a
    repeated field's values joined by commas (RFC 9110 §5.3), a folded line (obs-fold) taken
    as one space (RFC 9112 §5.2)."""
    fields = _Headers()
    last = ""
    for _ in range(MAX_FIELDS + 1):
        line = reader.line("header line")
        if line in (b"\r\n", b"\n"):
            return fields
        text = line.rstrip(b"\r\n").decode("latin-1")
        if text[:1] in (" ", "\t") and last:
            fields[last] = f"{dict.__getitem__(fields, last)} {text.strip()}".strip()
            continue
        name, colon, value = text.partition(":")
        if not colon or not is_name(name):
            raise http.client.HTTPException(f"the collector answered a malformed header "
                                            f"line: {text[:80]!r}")
        last = name.lower()
        value = value.strip(" \t")
        old = dict.get(fields, last)
        dict.__setitem__(fields, last, value if old is None else f"{old}, {value}")
    raise http.client.HTTPException(f"the collector answered more than {MAX_FIELDS} header "
                                    "fields")


def _chunks(reader: _Answer) -> bytes:
    """A chunked body (RFC 9112 §7.1), its extensions and trailer fields read and let go."""
    parts: list[bytes] = []
    total = 0
    for _ in range(MAX_CHUNKS + 1):
        size = reader.line("chunk size").split(b";", 1)[0].strip()
        if not 0 < len(size) <= 16 or size.strip(b"0123456789abcdefABCDEF"):
            raise http.client.HTTPException(f"the collector answered a malformed chunk size: "
                                            f"{size[:20]!r}")
        n = int(size, 16)
        if n == 0:
            _fields(reader)
            return b"".join(parts)
        total += n
        if total > MAX_BODY:
            raise http.client.HTTPException(f"the collector's answer is past {MAX_BODY} bytes")
        parts.append(reader.exactly(n))
        if reader.exactly(2) != b"\r\n":
            raise http.client.HTTPException("the collector answered a chunk without its CRLF")
    raise http.client.HTTPException(f"the collector answered more than {MAX_CHUNKS} chunks")


def _length(fields: _Headers) -> int:
    """The body's Content-Length: one number (a list of the same one, RFC 9110 §8.6)."""
    values = {v.strip() for v in dict.__getitem__(fields, "content-length").split(",")}
    if len(values) != 1 or not (n := values.pop()).isdigit() or not n.isascii():
        raise http.client.HTTPException("the collector answered a malformed Content-Length")
    n = n.lstrip("0") or "0"
    if len(n) > len(str(MAX_BODY)) or int(n) > MAX_BODY:
        raise http.client.HTTPException(f"the collector's answer is past {MAX_BODY} bytes")
    return int(n)


def _answer(reader: _Answer, method: str) -> tuple[int, str, _Headers, bytes, bool]:
    """The final answer: its status, reason, fields and body, and whether the connection
    ends with it (RFC 9112 §9.3: ``Connection: close``, HTTP/1.0 without keep-alive, a body
    read to the close)."""
    for _ in range(MAX_INTERIM + 1):
        line = reader.line("status line").rstrip(b"\r\n")
        version, _, rest = line.partition(b" ")
        code, _, reason = rest.partition(b" ")
        if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or \
                not code.isdigit():
            raise http.client.BadStatusLine(line[:80].decode("latin-1"))
        status = int(code)
        if status < 100:
            raise http.client.BadStatusLine(line[:80].decode("latin-1"))
        fields = _fields(reader)
        if status == 101:  # (nothing asked to switch)
            raise http.client.HTTPException("the collector answered 101 Switching Protocols")
        if status >= 200:
            break
    else:
        raise http.client.HTTPException(f"the collector answered more than {MAX_INTERIM} "
                                        "interim (1xx) answers")
    tokens = {t.strip().lower() for t in fields.get("connection", "").split(",")}
    close = "close" in tokens or (version == b"HTTP/1.0" and "keep-alive" not in tokens)
    if method == "HEAD" or status in (204, 304):
        body = b""
    elif "transfer-encoding" in fields:
        # Framed two ways, or chunked in HTTP/1.0 (which has no chunks): RFC 9112 §6.1 and
        # §6.3 name it a sign of smuggling or splitting, to be handled as an error.
        if "content-length" in fields or version == b"HTTP/1.0":
            raise http.client.HTTPException("the collector answered a body framed two ways "
                                            "(Transfer-Encoding with Content-Length, or in "
                                            "HTTP/1.0)")
        if fields["transfer-encoding"].rsplit(",", 1)[-1].strip().lower() != "chunked":
            raise http.client.HTTPException("the collector answered a transfer coding other "
                                            "than chunked last")
        body = _chunks(reader)
    elif "content-length" in fields:
        body = reader.exactly(_length(fields))
    else:  # (the body runs to the close)
        body = reader.to_close()
        close = True
    return status, reason.decode("latin-1"), fields, body, close


class ClientTransport(BaseHTTPTransport):
    """POSTs over one HTTP/1.1 connection, opened on first use and again after an error or
    an answer that ends it (the SDK's client retries a connection error once at once)."""

    def __init__(self, *, verify: bool | str = True,
                 cert: str | tuple[str, str] | None = None) -> None:
        self._verify = verify
        self._cert = cert
        self._context: ssl.SSLContext | None = None
        self._sock: socket.socket | None = None
        self._reader: _Answer | None = None
        self._origin: tuple[str, str, int | None] | None = None
        #: The last request's head but its length: (method, url, headers) and the bytes.
        self._head: tuple[tuple[Any, ...], bytes] | None = None
        #: How many times :meth:`close` was called.
        self._closes = 0

    def _tls(self) -> ssl.SSLContext:
        """The TLS context, made once. Settings it cannot use (a CA, certificate or key file
        missing or unreadable) are a ValueError: the operator's to fix, which the SDK's
        client does not retry as it retries the network."""
        if self._context is None:
            try:
                self._context = self._make_tls()
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"the OTLP exporter's TLS settings cannot be used: {exc} "
                                 "(OTEL_EXPORTER_OTLP_CERTIFICATE, _CLIENT_KEY, "
                                 "_CLIENT_CERTIFICATE)") from exc
        return self._context

    def _make_tls(self) -> ssl.SSLContext:
        if self._verify is False:
            context = ssl._create_unverified_context()
        else:
            context = ssl.create_default_context(
                cafile=self._verify if isinstance(self._verify, str) else None)
        if isinstance(self._cert, tuple):
            context.load_cert_chain(self._cert[0], self._cert[1])
        elif self._cert:
            context.load_cert_chain(self._cert)
        return context

    def _connection(self, scheme: str, host: str, port: int | None,
                    deadline: float | None) -> tuple[socket.socket, _Answer]:
        """The kept connection, if it is to the same origin and quiet: a connection with
        bytes waiting (an answer to no request, the rest of one) or closed by the collector
        is not used again, as urllib3 checks a pooled one (else the next request would read
        what was sent before it, and the connection stay an answer behind). Else a new one,
        each of its steps (every address's connect, the TLS handshake) within ``deadline``."""
        origin = (scheme, host, port)
        if self._sock is not None and self._reader is not None and self._origin == origin \
                and not self._reader.buf and not _waiting(self._sock):
            return self._sock, self._reader
        self._drop()
        if port == 0:
            raise ValueError(f"cannot post to {host}:0: no port")
        tls = self._tls() if scheme == "https" else None  # (before any connection is made)
        sock = self._connect(host, (443 if scheme == "https" else 80) if port is None else port,
                             deadline)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tls is not None:
                sock.settimeout(_left(deadline))
                # (the handshake apart from the wrap: ssl closes what it wrapped only on an
                # OSError or a ValueError, and an interrupt must not leave it open)
                sock = tls.wrap_socket(sock, server_hostname=host,
                                       do_handshake_on_connect=False)
                sock.do_handshake()
        except BaseException:
            sock.close()
            raise
        self._sock, self._reader, self._origin = sock, _Answer(sock), origin
        return sock, self._reader

    @staticmethod
    def _connect(host: str, port: int, deadline: float | None) -> socket.socket:
        """socket.create_connection's loop over the host's addresses, each connect given
        what is left of the deadline, not the whole timeout."""
        error: OSError | None = None
        for family, kind, proto, _, address in socket.getaddrinfo(host, port, 0,
                                                                   socket.SOCK_STREAM):
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(_left(deadline))
                sock.connect(address)
                return sock
            except OSError as exc:  # (the next address, while time is left: _left says)
                sock.close()
                error = exc
            except BaseException:
                sock.close()
                raise
        raise error if error is not None else OSError(f"no address for {host!r}")

    def _prefix(self, method: str, url: str, headers: dict[str, str] | None) -> bytes:
        """The request's head up to its Content-Length value, made once for a method, URL
        and headers (the SDK's client sends the same ones every time); a name or value that
        could end a line or the head is refused (ValueError), as http.client refuses it."""
        key = (method, url, tuple((headers or {}).items()))
        if self._head is not None and self._head[0] == key:
            return self._head[1]
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        host = _ascii_host(parts.hostname or "")
        if not is_name(method) or not _TARGET.fullmatch(target):
            raise ValueError(f"cannot send {method} {target!r}: not a request line")
        authority = f"[{host}]" if ":" in host else host
        if parts.port is not None:
            authority += f":{parts.port}"
        sent = dict(headers or {})  # the SDK's: content-type, user-agent, the operator's
        if not any(k.lower() == "content-type" for k in sent):
            sent["Content-Type"] = "application/x-protobuf"
        lines = [f"{method} {target} HTTP/1.1", f"Host: {authority}"]
        for name, value in sent.items():
            if name.lower() in ("host", "content-length", "transfer-encoding", "connection"):
                continue  # (this transport's to say)
            if not is_name(name):
                raise ValueError(f"cannot send the header {name[:100]!r}: {NAME_RULE}")
            if not isinstance(value, str) or not is_value(value):
                raise ValueError(f"cannot send the header {name!r}: {VALUE_RULE} (a str)")
            lines.append(f"{name}: {value}")
        prefix = ("\r\n".join(lines) + "\r\nContent-Length: ").encode("latin-1")
        self._head = (key, prefix)
        return prefix

    def request(self, method: str, url: str, *, headers: dict[str, str] | None = None,
                timeout: float | None = None, data: bytes | None = None) -> BaseHTTPResult:
        """One exchange, every step of it (connect, TLS, send, the answer) within
        ``timeout`` from now; an error is a result (the SDK's client decides: retried, or
        logged), and whatever cut it short, its connection is not used again."""
        deadline = None if timeout is None else time.monotonic() + timeout
        closes = self._closes
        try:
            body = data or b""
            head = self._prefix(method, url, headers) + b"%d\r\n\r\n" % len(body)
            parts = urlsplit(url)
            sock, reader = self._connection(parts.scheme, _ascii_host(parts.hostname or ""),
                                            parts.port, deadline)
            sock.settimeout(_left(deadline))  # (the whole send: one timeout since 3.5)
            sock.sendall(head + body)  # (one write: no wait for the head's ACK)
            reader.deadline = deadline
            status, reason, fields, answer, close = _answer(reader, method)
            # (bytes past the answer: an answer to no request; closed meanwhile: the
            # exporter's shutdown, whose close this connection was made too late for)
            if close or reader.buf or self._closes != closes:
                self._drop()
            return ClientResult(status_code=status, reason=reason, body=answer, head=fields)
        except Exception as exc:
            self._drop()
            return ClientResult(error=exc)
        except BaseException:  # (an interrupt: the exchange is cut short, and so is it)
            self._drop()
            raise

    def close(self) -> None:
        """Close the connection (the exporter's shutdown, from any thread): a post under
        way when it comes keeps no connection after it."""
        self._closes += 1
        self._drop()

    def _drop(self) -> None:
        # (taken from the attribute before it is closed: another thread's close may run
        # between a check and a use)
        sock, self._sock = self._sock, None
        self._reader = None
        if sock is not None:
            sock.close()

    def is_connection_error(self, exception: Exception | None) -> bool:
        return isinstance(exception, (ConnectionError, TimeoutError, http.client.HTTPException,
                                      OSError))


def _netrc_names(host: str, env: Mapping[str, str]) -> bool:
    """Whether requests would find credentials for ``host`` in a .netrc: the file ``NETRC``
    names, else ``~/.netrc`` or ``~/_netrc``, the first that is there (a file it cannot
    parse gives requests none)."""
    paths = [env["NETRC"]] if env.get("NETRC") else ["~/.netrc", "~/_netrc"]
    for path in paths:
        full = os.path.expanduser(path)
        if os.path.exists(full):
            try:
                return netrc.netrc(full).authenticators(host) is not None
            except (netrc.NetrcParseError, OSError):
                return False
            except ValueError:  # (not text: requests fails each post on it; its to do so)
                return True
    return False


def lean_transport(endpoint: str, environ: Mapping[str, str] | None = None
                   ) -> ClientTransport | None:
    """The transport for ``endpoint`` (the traces URL), TLS from the SDK's variables; None
    where the SDK's own must stay (a proxy for the endpoint, a credential provider or
    credentials its session would send, a scheme other than http(s))."""
    env = os.environ if environ is None else environ
    parts = urlsplit(endpoint)
    if parts.scheme not in ("http", "https") or any(env.get(v) for v in _PROVIDERS):
        return None
    # Credentials the SDK's requests session would send (Basic authorization): from the
    # endpoint's userinfo, or a .netrc entry for its host.
    if parts.username is not None or parts.password is not None or \
            _netrc_names(parts.hostname or "", env):
        return None
    proxies = urllib.request.getproxies_environment()
    bypass = getattr(urllib.request, "proxy_bypass_environment", None)  # (not in typeshed)
    if (proxies.get(parts.scheme) or proxies.get("all")) and \
            not (bypass and bypass(parts.hostname or "", proxies)):
        return None  # (ALL_PROXY too: requests sends through it where no scheme's is set)

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
