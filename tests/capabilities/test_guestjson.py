"""The strict, depth-bounded JSON reader: nesting measured without recursion, in linear time,
whatever the text does to fool the scan."""

from __future__ import annotations

import time

import pytest

from omnicore.capabilities import guestjson

MB = 1 << 20


@pytest.mark.parametrize(("text", "depth"), [
    (b"", 0), (b"1", 0), (b"[]", 1), (b'{"a": [1, {"b": []}]}', 4),
    (b'["]]]]", "[[[[[", "\\"[", {}]', 2),          # brackets inside strings do not count
    (b'"\\\\" [[1]]', 2),                            # an escaped backslash ends the escape
    ("[\"é\", [\"日本\"]]", 2), (b"]]]", -1),
])
def test_nesting(text: bytes | str, depth: int) -> None:
    assert guestjson.nesting(text) == depth


def test_deep_text_is_refused_before_it_is_parsed() -> None:
    for deep in (b"[" * 200_000 + b"]" * 200_000, b'{"a":' * 200_000 + b"1" + b"}" * 200_000,
                 "[" * 65):
        with pytest.raises(ValueError, match="nested more than 64 levels"):
            guestjson.loads(deep, max_depth=64)
    assert guestjson.loads("[" * 64 + "]" * 64, max_depth=64) is not None
    with pytest.raises(ValueError, match="NaN"):
        guestjson.loads("[NaN]", max_depth=64)


@pytest.mark.parametrize("shape", [
    b"[" * MB, b'"' * MB, b'"\\' * (MB // 2), b'\\"' * (MB // 2), b'"' + b"a" * MB,
    b"[" + b'"a",' * (MB // 4) + b"1]", (b"[" * 63 + b"]" * 63) * (MB // 126),
])
def test_a_megabyte_of_any_shape_is_scanned_quickly(shape: bytes) -> None:
    start = time.perf_counter()
    guestjson.nesting(shape)
    assert time.perf_counter() - start < 5.0  # linear: a quadratic scan takes minutes here
