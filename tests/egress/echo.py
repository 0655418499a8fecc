"""A real upstream on 127.0.0.1 that records what it received and echoes credentials back in
every encoding an API might use, and a leak detector that decodes instead of comparing text.

``GET /echo/<encoding>`` answers JSON ``{"seen": E(bearer token), "extra": E(X-Extra)}`` with
``E`` the encoding (the JSON ones are written by hand, as PHP or a hex-escaping encoder would),
and repeats ``E(token)`` in an ``X-Echo`` header when it is header-safe. ``/give`` answers
:attr:`Echo.give` as JSON, ``/redirect?to=URL`` a 302 to it; anything else ``{"ok": true}``.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, quote_plus, unquote, unquote_plus


def _json_php(text: str) -> str:
    return json.dumps(text).replace("/", "\\/")


def _json_hex(text: str) -> str:
    return '"' + "".join(f"\\u{ord(c):04x}" for c in text) + '"'


#: name -> (how the token is written inside the JSON body, header-safe text or None)
ENCODINGS: dict[str, Callable[[str], str]] = {
    "raw": lambda t: t,
    "url": lambda t: quote(t, safe=""),
    "url-lower": lambda t: re.sub(r"%[0-9A-F]{2}", lambda m: m[0].lower(), quote(t, safe="")),
    "url-plus": lambda t: quote_plus(t),
    "url-twice": lambda t: quote(quote(t, safe=""), safe=""),
    "base64": lambda t: base64.b64encode(t.encode()).decode(),
    "base64-nopad": lambda t: base64.b64encode(t.encode()).decode().rstrip("="),
    "base64url": lambda t: base64.urlsafe_b64encode(t.encode()).decode(),
    "base64url-nopad": lambda t: base64.urlsafe_b64encode(t.encode()).decode().rstrip("="),
    "base64-inside": lambda t: base64.b64encode(f"bot:{t}:tail".encode()).decode(),
    "base64-inside2": lambda t: base64.b64encode(f"xy{t}".encode()).decode(),
    "hex": lambda t: t.encode().hex(),
}
#: Encodings of the JSON text itself: the token is a JSON string written this way.
JSON_ENCODINGS: dict[str, Callable[[str], str]] = {
    "json-php": _json_php,                                   # "\/" for "/"
    "json-hex": _json_hex,                                   # every character as \\u00XX
    "json-php-base64": lambda t: _json_php(base64.b64encode(t.encode()).decode()),
}
ALL = (*ENCODINGS, *JSON_ENCODINGS)


class Echo:
    """The upstream: ``seen`` lists ``{"method", "path", "headers", "body"}`` per request."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.give: Any = {}
        echo = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _answer(self) -> None:
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                echo.seen.append({"method": self.command, "path": self.path,
                                  "headers": dict(self.headers.items()), "body": body})
                token = (self.headers.get("authorization") or "").removeprefix("Bearer ")
                extra = self.headers.get("x-extra") or ""
                head: dict[str, str] = {}
                name = self.path.split("?")[0].removeprefix("/echo/")
                if self.path.startswith("/echo/") and name in ENCODINGS:
                    enc = ENCODINGS[name]
                    data = json.dumps({"seen": enc(token), "extra": enc(extra)}).encode()
                    head["X-Echo"] = enc(token)
                elif self.path.startswith("/echo/") and name in JSON_ENCODINGS:
                    enc = JSON_ENCODINGS[name]
                    data = f'{{"seen": {enc(token)}, "extra": {enc(extra)}}}'.encode()
                elif self.path.startswith("/give"):
                    data = json.dumps(echo.give).encode()
                elif self.path.startswith("/redirect?to="):
                    self.send_response(302)
                    self.send_header("Location", unquote(self.path.split("=", 1)[1]))
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                else:
                    data = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                for k, v in head.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.base = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_B64_RUN = re.compile(r"[A-Za-z0-9+/_-]{8,}")
_HEX_RUN = re.compile(r"(?:[0-9a-fA-F]{2}){4,}")


def _unjson(text: str) -> str:
    text = re.sub(r"\\+u([0-9a-fA-F]{4})", lambda m: chr(int(m[1], 16)), text)
    return re.sub(r"\\+([/\"\\])", r"\1", text)


def _decodings(text: str) -> list[str]:
    """``text`` as it reads after every chain of up to three decodings an echo could need
    (JSON escapes, URL, HTML), then base64 or hex of any run in any of those."""
    out = {text}
    for _ in range(3):
        out |= {d(t) for t in out for d in (_unjson, unquote, unquote_plus, html.unescape)}
    found = list(out)
    for t in out:
        for run in _B64_RUN.findall(t):
            for start in range(4):
                chunk = run[start:]
                chunk = chunk[:-1] if len(chunk) % 4 == 1 else chunk + "=" * (-len(chunk) % 4)
                for decode in (base64.b64decode, base64.urlsafe_b64decode):
                    try:
                        found.append(decode(chunk).decode("latin-1"))
                    except (binascii.Error, ValueError):
                        pass
        for run in _HEX_RUN.findall(t):
            found.append(bytes.fromhex(run).decode("latin-1"))
    return found


def leaks(blob: str | bytes, *secrets: str) -> list[str]:
    """The secrets that ``blob`` still holds, in any of the echo's encodings (decoded, not
    compared: a new encoding defeats a list of spellings, not a decoder)."""
    text = blob if isinstance(blob, str) else blob.decode("utf-8", "replace")
    found = _decodings(text)
    try:
        found += _decodings(json.dumps(json.loads(text), ensure_ascii=False))
    except ValueError:
        pass
    return [s for s in secrets if any(s in t for t in found)]
