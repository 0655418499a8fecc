"""RFC 9110's grammar of an HTTP field (a header or trailer): the one judge of a name and a
value for every path that makes one the host sends, whoever wrote it.

- a plugin's outgoing request (omnicore/egress/client.py), its secrets' values included;
- a ``wasi:http`` component's fields (omnicore/routes/wasihttp.py);
- the operator's connector headers and OTLP export headers (omnicore/config), refused at
  load rather than at every request;
- the OTLP export's own head and the collector's answer (omnicore/telemetry/_http.py).

A name is a token (§5.6.2). A value holds field characters only (§5.5: visible ASCII,
obs-text 0x80-0xFF, space and horizontal tab): no CR or LF that would end the line (a
header injected), no NUL or other control that servers read each their own way. Leading
and trailing whitespace is allowed (a receiver strips it, §5.5). A ``str`` value is judged
by its code points as the latin-1 bytes it is sent as: one past U+00FF cannot be sent.

Each check is one regular expression over the whole text, never a loop a character at a
time: a guest's 10 MiB value is judged in milliseconds.
"""

from __future__ import annotations

import re

__all__ = ["NAME_RULE", "VALUE_RULE", "is_name", "is_value"]

#: What the grammar asks, as a refusal says it.
NAME_RULE = "a header name is a token (letters, digits and !#$%&'*+-.^_`|~)"
VALUE_RULE = ("a header value holds no CR, LF, NUL or other control character but tab, and "
              "no character past U+00FF")

_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_NOT_VALUE = re.compile(r"[^\t\x20-\x7e\x80-\xff]")
_NOT_VALUE_BYTES = re.compile(rb"[^\t\x20-\x7e\x80-\xff]")


def is_name(name: str) -> bool:
    """Whether ``name`` is a field name (and so a method: both are tokens)."""
    return _TOKEN.fullmatch(name) is not None


def is_value(value: str | bytes | bytearray) -> bool:
    """Whether ``value`` holds only characters a field value may."""
    if isinstance(value, str):
        return _NOT_VALUE.search(value) is None
    return _NOT_VALUE_BYTES.search(value) is None
