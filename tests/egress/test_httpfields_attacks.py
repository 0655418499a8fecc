"""Attacks on omnicore/httpfields.py's grammar as its callers use it: what a plugin, a
route's guest or an operator can still get onto the wire, and what the refusals do."""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

import pytest

from omnicore.core import jsoncodec
from omnicore.egress import Egress, Refused, Request
from omnicore.httpfields import is_name, is_value
from omnicore.routes import envelope
from tests.egress.echo import Echo
from tests.egress.test_egress_client import echo, egress

__all__ = ["echo", "egress"]  # (fixtures, used by name)


class _Bytes(bytes):
    """A bytes subclass whose own methods lie (what is judged is its buffer)."""

    def decode(self, *args: Any, **kwargs: Any) -> str:
        return "ok"


@pytest.mark.parametrize("value", [
    "a\r\n b", "a\n b", "a\r b", "a\r\n\tb",  # obs-fold and bare line ends
    "\x00", "a\x0bb", "a\x7f", "\ud800", "a\udcff", "\u0100", "a\u2028b",
])
def test_values_that_cannot_be_fields_are_refused_in_every_form(value: str) -> None:
    assert not is_value(value)
    if value.encode("utf-8", "surrogatepass").isascii() or all(ord(c) < 256 for c in value):
        raw = value.encode("latin-1")
        assert not is_value(raw)
        assert not is_value(bytearray(raw))
        assert not is_value(_Bytes(raw))


@pytest.mark.parametrize("name", ["", "a b", "a:b", "a\r\nb", "\u212a", "a\ud800", "x\x00",
                                  "a\u0131", "x\n"])
def test_names_that_are_not_tokens_are_refused(name: str) -> None:
    assert not is_name(name)


def test_valid_fields_are_taken() -> None:
    assert is_name("!#$%&'*+-.^_`|~09AZaz")
    for value in ("", " ", "\t", "a b\tc", "caf\u00e9", "\x80\xff", " lead and trail\t"):
        assert is_value(value) and is_value(value.encode("latin-1"))


def test_a_huge_value_is_judged_in_bounded_time() -> None:
    """10 MiB of a field's worst case (valid to its last character, then a CR)."""
    big = "a" * (10 << 20)
    start = time.perf_counter()
    assert is_value(big) and not is_value(big + "\r") and is_value(big.encode())
    assert not is_name(big + " ") and is_name(big)
    assert time.perf_counter() - start < 5  # a safety net: milliseconds expected


def test_a_plugins_obs_fold_and_line_ends_are_refused_unsent(
        egress: Callable[[dict[str, Any]], Egress], echo: Echo) -> None:
    e = egress({"api": {"base_url": echo.base}})
    plugin = e.client("p", {"allow_hosts": [echo.base], "allow_addresses": ["127.0.0.1"]})
    for headers in ({"x-v": "a\r\n b"}, {"x-v": "a\r\nX-Injected: 1"}, {"x-v": "\ud800"},
                    {"x-v\r\nX-Injected": "1"}, {"x-v": "a" * 1000 + "\n"},
                    {"Host": "h\r\nX-Injected: 1"}):
        with pytest.raises(Refused) as info:
            plugin.send(Request(url=f"{echo.base}/x", headers=headers))
        assert info.value.status == "INVALID", headers
    assert echo.seen == []


def test_telemetry_headers_that_cannot_be_sent_are_a_config_error() -> None:
    from pydantic import ValidationError

    from omnicore.config.telemetry import TelemetryConfig

    for headers in ({"x": "a\r\n b"}, {"x y": "v"}, {"x": "\u20ac"}, {"": "v"}):
        with pytest.raises(ValidationError):
            TelemetryConfig(headers=headers)
    assert TelemetryConfig(headers={"x-key": "caf\u00e9 \t"}).headers == {
        "x-key": "caf\u00e9 \t"}


def _block(head: bytes) -> bytes:
    return struct.pack("<I", len(head)) + head


@pytest.mark.parametrize("value", ["a\\r\\n b", "a\\u000bb", "a\\u007f"])
def test_a_guests_envelope_header_that_is_no_field_is_a_bad_response(value: str) -> None:
    head = b'{"status":200,"headers":{"x-a":"' + value.encode() + b'"}}'
    with pytest.raises(envelope._BadResponse):
        envelope.decode_response(_block(head), mode="envelope")


# Found by this file, fixed: a guest's envelope head with a lone surrogate in a header value
# (JSON '\ud800') raises UnicodeEncodeError out of _header_pairs' v.encode('utf-8'), not
# _BadResponse: routes/server.py's 'except _BadResponse' (a 502, the route's warning) does not
# catch it
def test_a_guests_envelope_header_with_a_lone_surrogate_is_a_bad_response() -> None:
    head = b'{"status":200,"headers":{"x-a":"\\ud800"}}'
    assert jsoncodec.loads(head)["headers"]["x-a"] == "\ud800"
    with pytest.raises(envelope._BadResponse):
        envelope.decode_response(_block(head), mode="envelope")
