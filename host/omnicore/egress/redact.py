"""The one redaction rule: a secret is cut out of whatever leaves the host's hands, in every
spelling it can take there.

An upstream may echo a credential back raw, JSON-escaped (``\\/`` for ``/``, ``\\u0041``),
URL-encoded (``%2F``, ``%252F`` twice over, ``+`` for a space), as an HTML character
reference (``&#47;``, ``&gt;``), in hex, or base64'd (standard or URL-safe alphabet, padded
or not, at any byte offset inside a longer blob: ``base64("user:" + token)``), and in any
chain of those (JSON in a JSON string, JSON sent URL-encoded).

A :class:`Redactor` knows each secret's *forms* (raw, hex, every base64 spelling). It cuts
them where they appear as they are, then decodes the escapes (JSON, URL, HTML) of what is
left, layer after layer, keeping where each decoded byte came from: a form found in a decoded
layer is cut from the original over the whole span that spelled it. Decoded data (a JSON
answer parsed into Python values) is redacted again string by string (:meth:`Redactor.cut_value`).

Secrets shorter than :data:`MIN_LENGTH` characters are not cut: they would shred ordinary
output, and a credential that short protects nothing.
"""

from __future__ import annotations

import base64
import functools
import html
import re
import time
from bisect import bisect_left, bisect_right
from collections.abc import Iterable
from typing import Any

__all__ = ["MARK", "MIN_LENGTH", "Redactor"]

MARK = "[REDACTED]"
MIN_LENGTH = 4
_MIN_FRAGMENT = 6           # a base64 fragment shorter than this is too common to cut
_LAYERS = 6                 # escapes decoded this many times over (JSON in JSON in a URL ...)
_WINDOW = 1 << 20          # bytes decoded between two looks at the deadline
_SPELLING_PER_BYTE = 12 * _LAYERS   # the longest spelling of one byte, escaped _LAYERS times
# What starts an escape; without one, there is nothing to decode.
_STARTS = (b"\\", b"%", b"&")
_ESCAPE = re.compile(
    rb"\\u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"   # a surrogate pair
    rb"|\\u[0-9a-fA-F]{4}|\\[/\"\\bfnrt]"
    rb"|%[0-9a-fA-F]{2}"
    rb"|&#[0-9]{1,7};?|&#[xX][0-9a-fA-F]{1,6};?|&(?:lt|gt|amp|quot|apos);")
_ESCAPE_PLUS = re.compile(_ESCAPE.pattern + rb"|\+")                   # "+" for a space
_SHORT = {b"b": b"\b", b"f": b"\f", b"n": b"\n", b"r": b"\r", b"t": b"\t"}

# (original start, original end, decoded start, decoded end) of each escape of one layer
_Escapes = list[tuple[int, int, int, int]]


@functools.lru_cache(maxsize=4096)
def _decoded(escape: bytes) -> bytes | None:
    """The bytes one escape stands for (None: not a character, left as it is)."""
    try:
        if escape.startswith(b"\\u"):
            units = [int(escape[i + 2:i + 6], 16) for i in range(0, len(escape), 6)]
            code = units[0] if len(units) == 1 else \
                0x10000 + ((units[0] - 0xD800) << 10) + (units[1] - 0xDC00)
            return chr(code).encode()
        if escape.startswith(b"\\"):
            return _SHORT.get(escape[1:], escape[1:])
        if escape.startswith(b"%"):
            return bytes([int(escape[1:], 16)])
        if escape == b"+":
            return b" "
        text = html.unescape(escape.decode() + ("" if escape.endswith(b";") else ";"))
        return None if text.startswith("&") else text.encode()
    except (ValueError, UnicodeEncodeError, OverflowError):  # a lone surrogate, > U+10FFFF
        return None


def _substitute(m: re.Match[bytes]) -> bytes:
    value = _decoded(m[0])
    return m[0] if value is None else value


def _base64_forms(data: bytes) -> list[str]:
    """Every base64 spelling of ``data``: whole (padded and not) and, for each of the three
    byte offsets it can start at inside a longer blob, the characters that it alone decides."""
    out = []
    n = len(data)
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(data).decode()
        out += [whole, whole.rstrip("=")]
        for k in range(3):
            coded = encode(b"\0" * k + data).decode().rstrip("=")
            fragment = coded[-(-8 * k // 6):(8 * (k + n)) // 6]
            if len(fragment) >= _MIN_FRAGMENT:
                out.append(fragment)
    return out


def _forms(secret: str) -> list[bytes]:
    data = secret.encode()
    return [data, data.hex().encode(), data.hex().upper().encode(),
            *(f.encode() for f in _base64_forms(data))]


def _start(pos: int, escapes: _Escapes, starts: list[int]) -> int:
    """A decoded layer's position as a start in the layer below it."""
    i = bisect_right(starts, pos) - 1
    if i < 0:
        return pos
    os_, oe, _, de = escapes[i]
    return os_ if pos < de else pos - de + oe


def _end(pos: int, escapes: _Escapes, starts: list[int]) -> int:
    """A decoded layer's position as an (exclusive) end in the layer below it."""
    i = bisect_left(starts, pos) - 1
    if i < 0:
        return pos
    _, oe, _, de = escapes[i]
    return oe if pos <= de else pos - de + oe


class Redactor:
    """Cuts a set of secrets out of bytes, text and decoded JSON data (``[REDACTED]``).

    Built empty and fed as credentials are revealed (:meth:`add`); an empty redactor returns
    everything unchanged at no cost. Plain spellings are cut by ``replace``; escaped ones cost
    one pass per layer of escapes present, which ``deadline`` (``time.monotonic()`` seconds)
    can end: TimeoutError then, and the caller must not hand out the input.
    """

    __slots__ = ("_escape", "_forms")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._forms: list[bytes] = []
        self._escape = _ESCAPE
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Cut these too (each in every spelling)."""
        for secret in secrets:
            if len(secret) >= MIN_LENGTH:
                self._forms += [f for f in _forms(secret) if f not in self._forms]
                if " " in secret:
                    self._escape = _ESCAPE_PLUS
        self._forms.sort(key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def cut(self, data: bytes, deadline: float | None = None) -> bytes:
        """``data`` with every spelling of every secret cut."""
        if not self._forms or not data:
            return data
        mark = MARK.encode()
        for form in self._forms:
            data = data.replace(form, mark)
        spans = self._hidden(data, deadline)
        if not spans:
            return data
        out, last = [], 0
        for a, b in spans:
            if b > last:
                out += [data[last:max(a, last)], mark]
                last = b
        out.append(data[last:])
        return b"".join(out)

    def cut_text(self, text: str, deadline: float | None = None) -> str:
        """``text`` with every spelling of every secret cut."""
        if not self._forms or not text:
            return text
        return self.cut(text.encode("utf-8", "surrogatepass"), deadline).decode(
            "utf-8", "surrogatepass")

    def _hidden(self, data: bytes, deadline: float | None) -> list[tuple[int, int]]:
        """Where in ``data`` an escaped spelling of a form lies, sorted by start.

        Window by window (each reaching one longest spelling past its end, so a spelling that
        starts in one is whole in it), looking at the deadline between windows: decoding
        alone finds out whether a window hides a form; only then is it decoded again keeping
        positions, which costs twice as much.
        """
        if not self._escapes_in(data):
            return []
        reach = len(self._forms[0]) * _SPELLING_PER_BYTE
        spans: list[tuple[int, int]] = []
        for at in range(0, len(data), _WINDOW):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("the deadline passed while cutting secrets out")
            window = data[at:at + _WINDOW + reach]
            if self._hides(window):
                spans += [(at + a, at + b) for a, b in self._spans(window)]
        return sorted(spans)

    def _escapes_in(self, layer: bytes) -> bool:
        return any(s in layer for s in _STARTS) or (
            self._escape is _ESCAPE_PLUS and b"+" in layer)

    def _hides(self, window: bytes) -> bool:
        layer = window
        for _ in range(_LAYERS):
            if not self._escapes_in(layer):
                return False
            decoded = self._escape.sub(_substitute, layer)
            if decoded == layer:
                return False
            layer = decoded
            if any(form in layer for form in self._forms):
                return True
        return False

    def _spans(self, window: bytes) -> list[tuple[int, int]]:
        layers: list[tuple[_Escapes, list[int]]] = []
        spans: list[tuple[int, int]] = []
        layer = window
        for _ in range(_LAYERS):
            if not self._escapes_in(layer):
                break
            layer, escapes = self._decode(layer)
            if not escapes:
                break
            layers.append((escapes, [e[2] for e in escapes]))
            for form in self._forms:
                found = layer.find(form)
                while found >= 0:
                    a, b = found, found + len(form)
                    for esc, starts in reversed(layers):
                        a, b = _start(a, esc, starts), _end(b, esc, starts)
                    spans.append((a, b))
                    found = layer.find(form, found + len(form))
        return spans

    def _decode(self, data: bytes) -> tuple[bytes, _Escapes]:
        """``data`` with one layer of escapes decoded, and where each one was."""
        pieces: list[bytes] = []
        escapes: _Escapes = []
        last = size = 0
        for m in self._escape.finditer(data):
            value = _decoded(m[0])
            if value is None:
                continue
            pieces.append(data[last:m.start()])
            size += m.start() - last
            escapes.append((m.start(), m.end(), size, size + len(value)))
            pieces.append(value)
            size += len(value)
            last = m.end()
        pieces.append(data[last:])
        return b"".join(pieces), escapes

    def cut_value(self, value: Any, deadline: float | None = None) -> Any:
        """Decoded JSON data (``dict``/``list``/``str``/...) with every string and key cut;
        a new structure, walked without recursion (an upstream chooses the depth)."""
        if not self._forms:
            return value
        root = [value]
        stack: list[tuple[Any, Any]] = [(root, 0)]
        while stack:
            holder, key = stack.pop()
            item = holder[key]
            if isinstance(item, str):
                holder[key] = self.cut_text(item, deadline)
            elif isinstance(item, list):
                holder[key] = copy = list(item)
                stack.extend((copy, i) for i in range(len(copy)))
            elif isinstance(item, dict):
                holder[key] = mapping = {
                    (self.cut_text(k, deadline) if isinstance(k, str) else k): v
                    for k, v in item.items()}
                stack.extend((mapping, k) for k in mapping)
        return root[0]
