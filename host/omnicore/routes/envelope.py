"""The request envelope and the response block (specs/http-routes.md §2, §3): the
``omnicore:http`` block format, ``head_len: u32 LE | head JSON | body``."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from omnicore.core import jsoncodec
from omnicore.httpfields import is_name, is_value

__all__ = ["Response", "decode_response", "encode_request", "head_block", "query_params"]

#: Headers the host sets or that belong to one connection: a plugin's are dropped.
HOP = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive", "upgrade",
                 "trailer", "te", "proxy-connection", "proxy-authenticate",
                 "proxy-authorization"})
#: Headers a plugin may not send on the console's origin: they reach past its own route (a
#: service worker claiming the whole origin, the console's cookies and storage wiped, HSTS,
#: another server or a report collector for every request to the origin), or would undo the
#: console's own security headers (a first ``x-content-type-options`` value is the one read).
ORIGIN_WIDE = frozenset({"service-worker-allowed", "clear-site-data",
                         "strict-transport-security", "alt-svc", "nel", "report-to",
                         "x-content-type-options", "x-frame-options"})
#: The console's cookies (``omnicore_session``, ``omnicore_login_csrf``, ...): a plugin
#: neither sets them (session fixation, a sign-out) nor sees them (no ambient authority).
CONSOLE_COOKIE = "omnicore_"
#: Every route answer is a sandboxed document: a plugin's page (and its script, also a route,
#: so 'self' to the console's policy) runs in an opaque origin, never as the console's.
SANDBOX = (b"content-security-policy",
           b"sandbox allow-scripts allow-forms allow-popups allow-downloads")


#: Response heads already checked, by their bytes: a handler answers with a few heads over
#: and over (a status and a content-type), and the JSON parse and the header checks were a
#: fifth of a route's own CPU (issue 65, deliverable 6). Heads up to _CACHED_HEAD bytes, at
#: most _CACHED_HEADS of them (then all forgotten at once: no order to keep across threads).
_heads: dict[bytes, tuple[int, tuple[tuple[bytes, bytes], ...]]] = {}
_CACHED_HEAD = 1024
_CACHED_HEADS = 256


class _BadResponse(ValueError):
    """The handler's output is not a response block (the message says why)."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    #: A proxy component's trailers, set on the instance when it sent some (the server
    #: reads this default where a getattr(..., None) raised and caught an AttributeError
    #: on every other answer).
    trailers: ClassVar[list[tuple[bytes, bytes]] | None] = None


def head_block(head: dict[str, Any], body: bytes) -> bytes:
    """``head`` and ``body`` as one block."""
    raw = jsoncodec.dumps(head)  # compact UTF-8, as json.dumps(ensure_ascii=False) writes
    return struct.pack("<I", len(raw)) + raw + body


def encode_request(head: dict[str, Any], body: bytes) -> bytes:
    return head_block(head, body)


def query_params(query: str) -> dict[str, list[str]]:
    """The envelope's ``query_params``: each name's values in order, as
    ``parse_qsl(query, keep_blank_values=True)`` reads them."""
    if "%" in query:  # escapes to decode: urllib's own reading (UTF-8, bad bytes replaced)
        pairs = parse_qsl(query, keep_blank_values=True)
    else:
        # parse_qsl's steps without its unquote, which leaves text with no '%' as it is:
        # split at '&', skip empty fields, a field with no '=' has an empty value, '+' is a
        # space. (parse_qsl's argument checks and unquote calls were two thirds of the
        # envelope's head, on every request: issue 65, deliverable 6.)
        pairs = [(name.replace("+", " "), value.replace("+", " "))
                 for name, _, value in (field.partition("=")
                                        for field in query.split("&") if field)]
    out: dict[str, list[str]] = {}
    for k, v in pairs:
        out.setdefault(k, []).append(v)
    return out


def _header_pairs(headers: Any) -> list[tuple[bytes, bytes]]:
    if not isinstance(headers, dict):
        raise _BadResponse("'headers' is not an object")
    out = []
    for name, value in headers.items():
        values = value if isinstance(value, list) else [value]
        if not isinstance(name, str) or not is_name(name):
            raise _BadResponse(f"header name {name!r} is not an HTTP token")
        text = name.lower()  # a token: ASCII
        key = text.encode("ascii")
        if text in HOP or text.startswith("proxy-") or text in ORIGIN_WIDE:
            continue
        for v in values:
            if not isinstance(v, str):
                raise _BadResponse(f"header {name!r}: values are strings")
            try:
                raw = v.encode("utf-8").strip(b" \t")
            except UnicodeEncodeError:  # a lone surrogate (JSON's "\ud800")
                raise _BadResponse(f"header {name!r}: a value is not text") from None
            if not is_value(raw):
                raise _BadResponse(f"header {name!r}: a value holds a control character "
                                   "(CR, LF, NUL, ...)")
            if key == b"set-cookie" and raw.lstrip().lower().startswith(
                    CONSOLE_COOKIE.encode()):
                continue
            out.append((key, raw))
    return out


def _without_console_cookies(cookie: str) -> str:
    """The ``cookie`` header without the console's own cookies."""
    return "; ".join(c for c in (p.strip() for p in cookie.split(";"))
                     if c and not c.lower().startswith(CONSOLE_COOKIE))


def decode_response(out: bytes, *, mode: str) -> Response:
    """The response the handler's output ``out`` makes; :class:`_BadResponse` when it is
    malformed."""
    if mode == "body":
        if not out:
            return Response(204, [], b"")
        return Response(200, [(b"content-type", b"application/json")], out)
    if not out:
        return Response(204, [], b"")
    if len(out) < 4:
        raise _BadResponse(f"{len(out)} bytes is too short for a response block")
    (n,) = struct.unpack_from("<I", out)
    if n > len(out) - 4:
        raise _BadResponse(f"the head is {n} bytes but only {len(out) - 4} follow")
    raw = bytes(out[4:4 + n])  # (the same object when out is bytes)
    known = _heads.get(raw) if n <= _CACHED_HEAD else None
    if known is not None:
        return Response(known[0], list(known[1]), out[4 + n:])
    try:
        head = jsoncodec.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _BadResponse(f"the head is not JSON ({exc})") from None
    if not isinstance(head, dict):
        raise _BadResponse("the head is not a JSON object")
    status = head.get("status", 200)
    if type(status) is not int or not 200 <= status <= 599:
        raise _BadResponse(f"status {status!r} is not an integer 200-599")
    headers = _header_pairs(head.get("headers", {}))
    if n <= _CACHED_HEAD:
        if len(_heads) >= _CACHED_HEADS:
            _heads.clear()
        _heads[raw] = (status, tuple(headers))
    return Response(status, headers, out[4 + n:])
