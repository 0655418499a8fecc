"""The one redaction rule (omnicore.egress.redact): a secret is cut in every spelling an
upstream can echo it in, and nothing else is touched. Checked by decoding what is left
(tests/egress/echo.py), not by comparing it with the spellings the redactor knows."""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnicore.egress import Redactor
from omnicore.egress.redact import MARK
from tests.egress.echo import ALL, ENCODINGS, JSON_ENCODINGS, leaks

TOKEN = "tok/en+4f9b~2c7e=1d8a>>?"


def body(encoding: str, token: str = TOKEN) -> str:
    """The JSON an echoing upstream answers: ``{"seen": <token in that encoding>}``."""
    if encoding in JSON_ENCODINGS:
        return f'{{"seen": {JSON_ENCODINGS[encoding](token)}}}'
    return json.dumps({"seen": ENCODINGS[encoding](token)})


def test_the_detector_sees_every_encoding_unredacted() -> None:
    # Without this, "no leak" below could mean a blind detector.
    assert "/" in base64.b64encode(TOKEN.encode()).decode()
    assert "+" in base64.b64encode(TOKEN.encode()).decode()
    for encoding in ALL:
        assert leaks(body(encoding), TOKEN) == [TOKEN], encoding


@pytest.mark.parametrize("encoding", ALL)
def test_every_encoding_is_cut_as_bytes_text_and_decoded(encoding: str) -> None:
    r = Redactor([TOKEN])
    raw = body(encoding)
    as_bytes = r.cut(raw.encode())
    assert leaks(as_bytes, TOKEN) == [] and MARK.encode() in as_bytes, as_bytes
    assert r.cut_text(raw) == as_bytes.decode()
    # Decoded first and redacted after: the JSON escapes are gone before the cut.
    decoded = r.cut_value(json.loads(raw))
    assert leaks(json.dumps(decoded), TOKEN) == [] and MARK in decoded["seen"]


def test_escapes_nested_and_mixed_are_cut() -> None:
    r = Redactor([TOKEN])
    inner = json.dumps({"token": TOKEN}).replace("/", "\\/")
    twice = json.dumps({"payload": inner})              # JSON in a JSON string: "\\\\/"
    assert "tok\\\\/en" in twice
    mixed = "".join(f"\\u{ord(c):04x}" if i % 3 == 0 else quote(c, safe="") if i % 3 == 1
                    else c for i, c in enumerate(TOKEN))
    html = TOKEN.replace(">", "&gt;").replace("/", "&#x2F;")
    for text in (twice, mixed, html, quote(mixed, safe="")):
        out = r.cut_text(text)
        assert leaks(out, TOKEN) == [] and MARK in out, text


def test_secrets_added_later_are_cut_and_short_ones_never() -> None:
    r = Redactor()
    assert not r and r.cut(b"anything") == b"anything"
    r.add("abc")                                 # too short to cut without shredding output
    assert not r and r.cut_text("abc abc") == "abc abc"
    r.add(TOKEN, "second-secret-99")
    assert r.cut_text(f"{TOKEN} and second-secret-99") == f"{MARK} and {MARK}"


def test_nothing_but_secrets_changes() -> None:
    r = Redactor([TOKEN])
    ordinary = json.dumps({"url": "https://x.example/a/b?c=%2F&d=1", "s": "tok/en", "n": 1,
                           "html": "&lt;b&gt; \\u00e9", "b64": base64.b64encode(b"tok").decode()}
                          ).replace("/", "\\/")
    assert r.cut_text(ordinary) == ordinary and r.cut(ordinary.encode()) == ordinary.encode()
    assert r.cut_value(json.loads(ordinary)) == json.loads(ordinary)


def test_a_secret_among_many_escapes_is_cut_exactly() -> None:
    r = Redactor([TOKEN])
    spelled = "".join(f"\\u{ord(c):04x}" for c in TOKEN)
    for before in (0, 1, 10_000, 100_001):
        data = ("x\\/%41" * before + spelled + "&amp;y" * 1000).encode()
        out = r.cut(data)
        assert out == ("x\\/%41" * before + MARK + "&amp;y" * 1000).encode(), before


def test_a_deadline_ends_a_long_redaction() -> None:
    r = Redactor([TOKEN])
    data = b"\\u0073%2F" * 400_000                      # escapes everywhere: the slow path
    with pytest.raises(TimeoutError):
        r.cut(data, deadline=time.monotonic() - 1)
    assert r.cut(b"plain text, no escape", deadline=time.monotonic() - 1) == \
        b"plain text, no escape"                       # nothing to do: no deadline to pass


def test_decoded_values_are_walked_without_recursion() -> None:
    r = Redactor([TOKEN])
    deep: object = TOKEN
    for _ in range(50_000):
        deep = [deep]
    out = r.cut_value({TOKEN: deep})
    assert list(out) == [MARK]
    inner = out[MARK]
    while isinstance(inner, list):
        inner = inner[0]
    assert inner == MARK


SECRET_CHARS = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FF,
                                              exclude_characters="\\"), min_size=8, max_size=40)


@settings(max_examples=150, deadline=None)
@given(secret=SECRET_CHARS, encoding=st.sampled_from(ALL),
       before=st.text(alphabet=" abc,:{}", max_size=20),
       after=st.text(alphabet=" xyz,:{}", max_size=20))
def test_property_no_encoding_of_any_secret_survives(secret: str, encoding: str, before: str,
                                                     after: str) -> None:
    r = Redactor([secret])
    raw = before + body(encoding, secret) + after
    assert leaks(r.cut(raw.encode()), secret) == []
    assert leaks(r.cut_text(raw), secret) == []
