"""The response block's decoding keeps the heads it checked (envelope._heads, issue 65's speed
work): a kept head answers as a fresh decode would, never one response's headers in another's,
and a malformed head is refused however often a good one came before it."""

from __future__ import annotations

import itertools
import json
from urllib.parse import parse_qsl

import pytest

from omnicore.routes import envelope
from omnicore.routes.envelope import _BadResponse, decode_response, encode_request, query_params


def _block(head: dict[str, object], body: bytes = b"hi") -> bytes:
    return encode_request(head, body)


def test_a_kept_head_answers_as_a_fresh_one() -> None:
    out = _block({"status": 201, "headers": {"content-type": "text/plain", "x-a": ["1", "2"]}})
    first = decode_response(out, mode="envelope")
    first.headers.append((b"x-mutated", b"by the first caller"))
    second = decode_response(out, mode="envelope")
    assert second.status == 201
    assert second.headers == [(b"content-type", b"text/plain"), (b"x-a", b"1"), (b"x-a", b"2")]
    assert decode_response(bytearray(out[:-2]) + b"yo", mode="envelope").body == b"yo"


@pytest.mark.parametrize("head", [b'{"status": 99}', b'{"headers": {"a b": "1"}}',
                                  b'{"headers": {"x": "a\\nb"}}', b"[1]", b"{"])
def test_a_malformed_head_stays_refused(head: bytes) -> None:
    good = _block({"status": 200, "headers": {"x": "a"}})
    bad = len(head).to_bytes(4, "little") + head
    for _ in range(3):
        assert decode_response(good, mode="envelope").status == 200
        with pytest.raises(_BadResponse):
            decode_response(bad, mode="envelope")


def test_more_heads_than_are_kept_and_a_long_one() -> None:
    for i in range(envelope._CACHED_HEADS * 2 + 3):
        r = decode_response(_block({"status": 200 + i % 300, "headers": {"x-n": str(i)}}),
                            mode="envelope")
        assert (r.status, r.headers) == (200 + i % 300, [(b"x-n", str(i).encode())])
    assert len(envelope._heads) <= envelope._CACHED_HEADS
    long = {"status": 200, "headers": {"x-long": "v" * envelope._CACHED_HEAD}}
    raw = json.dumps(long).encode()
    assert len(raw) > envelope._CACHED_HEAD
    r = decode_response(_block(long), mode="envelope")
    assert r.headers == [(b"x-long", b"v" * envelope._CACHED_HEAD)]
    assert all(len(k) <= envelope._CACHED_HEAD for k in envelope._heads)


def test_query_params_read_as_parse_qsl_reads_them() -> None:
    """The envelope's query_params (its own split where no '%' is to be decoded) are what
    parse_qsl(keep_blank_values=True) gives, for every query of up to 4 of these pieces."""
    pieces = ["a", "=", "&", "+", "%41", "%", "%e9", "\xe9", ";", " ", "b=2"]
    for n in range(5):
        for parts in itertools.product(pieces, repeat=n):
            query = "".join(parts)
            expected: dict[str, list[str]] = {}
            for k, v in parse_qsl(query, keep_blank_values=True):
                expected.setdefault(k, []).append(v)
            got = query_params(query)
            assert list(got.items()) == list(expected.items()), query
