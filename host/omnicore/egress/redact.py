"""The one redaction rule: a secret is cut out of whatever leaves the host's hands, in every
spelling it can take there.

An upstream may echo a credential back raw, JSON-escaped (``\\/`` for ``/``, ``\\u0041``),
URL-encoded (``%2F``, ``%252F`` twice over, ``+`` for a space), as an HTML character
reference, in hex, or base64'd (standard or URL-safe alphabet, padded or not, at any byte
offset inside a longer blob: ``base64("user:" + token)``). A :class:`Redactor` knows each
secret's *forms* (raw, hex, every base64 spelling) and matches each form with every character
written in any of those escapes, so mixed spellings are caught too; decoded data (a JSON
answer parsed into Python values) is redacted again string by string, so whatever the
decoding turned back into the raw secret is cut after it.

Secrets shorter than :data:`MIN_LENGTH` characters are not cut: they would shred ordinary
output, and a credential that short protects nothing.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Iterable
from typing import Any

__all__ = ["MARK", "MIN_LENGTH", "Redactor"]

MARK = "[REDACTED]"
MIN_LENGTH = 4
_MIN_FRAGMENT = 6           # a base64 fragment shorter than this is too common to cut
# An escape can only hide a secret where one of these appears (after the plain forms are cut).
_ESCAPES = ("\\", "%", "&#")
_JSON_SHORT = {"\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t"}
# Escapes nest (JSON in a JSON string, a URL encoded twice) only so deep, which bounds the
# length of one match and so the overlap between the chunks a long input is cut in.
_DEPTH = 4
_PER_CHAR = 4 * (1 + 2 * _DEPTH + 2)   # the longest spelling of one character (4 bytes, %25..)
_CHUNK = 256 * 1024


def _hex(digits: str) -> str:
    """A hex number matched in either case."""
    return "".join(f"[{d.lower()}{d.upper()}]" if d.isalpha() else d for d in digits)


def _ways(c: str, binary: bool) -> list[str]:
    """Regexes for one character of a form, one per escape it may be written in; each starts
    with a literal, so that the regex engine can skip every position no way can start at."""
    code = ord(c)
    raw = "".join(f"\\x{b:02x}" for b in c.encode()) if binary else re.escape(c)
    slashes = rf"\\\\{{0,{4 * _DEPTH - 1}}}"     # one backslash, then as many as nesting adds
    ways = [raw]
    if c in "/\"\\":
        ways.append(slashes + raw)
    if c in _JSON_SHORT:
        ways.append(slashes + _JSON_SHORT[c])
    if code < 0x10000:
        ways.append(rf"{slashes}u{_hex(f'{code:04x}')}")
    else:                                           # a JSON surrogate pair
        v = code - 0x10000
        ways.append(rf"{slashes}u{_hex(f'{0xD800 + (v >> 10):04x}')}"
                    rf"{slashes}u{_hex(f'{0xDC00 + (v & 0x3FF):04x}')}")
    ways.append("".join(rf"%(?:25){{0,{_DEPTH}}}{_hex(f'{b:02x}')}" for b in c.encode()))
    if c == " ":
        ways.append(r"\+")
    ways.append(rf"&#0{{0,4}}{code};?")
    ways.append(rf"&#[xX]0{{0,4}}{_hex(f'{code:x}')};?")
    return ways


def _spelled(forms: list[str], binary: bool) -> Any:
    """One regex matching every form in every spelling, as a flat alternation whose branches
    all start with a literal (15x faster than nesting the first character's group)."""
    branches: list[str] = []
    for form in sorted(forms, key=len, reverse=True):
        rest = "".join("(?:" + "|".join(_ways(c, binary)) + ")" for c in form[1:])
        branches.extend(way + rest for way in _ways(form[0], binary))
    source = "|".join(branches)
    return re.compile(source.encode() if binary else source)


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


def _forms(secret: str) -> list[str]:
    data = secret.encode()
    return [secret, data.hex(), data.hex().upper(), *_base64_forms(data)]


class Redactor:
    """Cuts a set of secrets out of bytes, text and decoded JSON data (``[REDACTED]``).

    Built empty and fed as credentials are revealed (:meth:`add`); an empty redactor returns
    everything unchanged at no cost. Plain spellings are cut by ``replace`` (fast); escaped
    ones by one regex, run only over the parts of the input where an escape appears, chunk by
    chunk so that ``deadline`` (``time.monotonic()`` seconds) can end a long one:
    TimeoutError then, and the caller must not hand out the input.
    """

    __slots__ = ("_escapes", "_forms", "_patterns")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._forms: list[str] = []
        self._patterns: dict[bool, Any] = {}
        self._escapes: tuple[str, ...] = _ESCAPES
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Cut these too (each in every spelling)."""
        for secret in secrets:
            if len(secret) >= MIN_LENGTH:
                for form in _forms(secret):
                    if form not in self._forms:
                        self._forms.append(form)
                if " " in secret:
                    self._escapes = (*_ESCAPES, "+")
        self._forms.sort(key=len, reverse=True)
        self._patterns.clear()

    def __bool__(self) -> bool:
        return bool(self._forms)

    def bytes(self, data: bytes, deadline: float | None = None) -> bytes:
        """``data`` with every spelling of every secret cut."""
        if not self._forms or not data:
            return data
        for form in self._forms:
            data = data.replace(form.encode(), MARK.encode())
        out: bytes = self._escaped(data, tuple(e.encode() for e in self._escapes),
                                   MARK.encode(), True, deadline)
        return out

    def text(self, text: str, deadline: float | None = None) -> str:
        """``text`` with every spelling of every secret cut."""
        if not self._forms or not text:
            return text
        for form in self._forms:
            text = text.replace(form, MARK)
        out: str = self._escaped(text, self._escapes, MARK, False, deadline)
        return out

    def _escaped(self, data: Any, escapes: tuple[Any, ...], mark: Any, binary: bool,
                 deadline: float | None) -> Any:
        if not any(e in data for e in escapes):
            return data
        pattern = self._patterns.get(binary)
        if pattern is None:
            pattern = self._patterns[binary] = _spelled(self._forms, binary)
        reach = len(self._forms[0]) * _PER_CHAR        # no match is longer
        out = []
        last = pos = 0
        while pos < len(data):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("the deadline passed while cutting secrets out")
            stop = min(len(data), pos + _CHUNK)
            # A match that starts in [pos, stop) ends before stop + reach and holds an escape.
            if any(data.find(e, pos, stop + reach) >= 0 for e in escapes):
                for m in pattern.finditer(data, pos, stop + reach):
                    if m.start() >= stop:
                        break
                    out += [data[last:m.start()], mark]
                    last = m.end()
            pos = max(stop, last)
        out.append(data[last:])
        return data[:0].join(out)

    def value(self, value: Any, deadline: float | None = None) -> Any:
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
                holder[key] = self.text(item, deadline)
            elif isinstance(item, list):
                holder[key] = copy = list(item)
                stack.extend((copy, i) for i in range(len(copy)))
            elif isinstance(item, dict):
                holder[key] = mapping = {(self.text(k, deadline) if isinstance(k, str) else k): v
                                      for k, v in item.items()}
                stack.extend((mapping, k) for k in mapping)
        return root[0]
