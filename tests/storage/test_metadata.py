"""The metadata and filter rules memories and vectors share (storage/metadata.py)."""

from __future__ import annotations

import math

import pytest

from omnicore.storage.memory_rows import BadMemory
from omnicore.storage.memory_rows import check_filter as memory_filter
from omnicore.storage.metadata import check_filter, metadata_json
from omnicore.storage.vector_rows import BadVector
from omnicore.storage.vector_rows import check_filter as vector_filter


def test_metadata_is_compact_json_of_an_object() -> None:
    assert metadata_json(None, BadMemory) is None
    assert metadata_json({"é": [1, 2]}, BadMemory) == '{"é":[1,2]}'
    with pytest.raises(BadVector, match="metadata must be a JSON object"):
        metadata_json([1], BadVector)  # type: ignore[arg-type]


def test_a_filter_is_checked_pairs_with_booleans_as_numbers() -> None:
    assert check_filter(None, BadMemory) == []
    assert check_filter({"a": "x", "b": True, "c": 2.5}, BadMemory) == [
        ("a", "x"), ("b", 1), ("c", 2.5)]


@pytest.mark.parametrize(("flt", "says"), [
    ({str(i): i for i in range(17)}, "at most 16 keys"),
    ({"": 1}, "bad filter key"),
    ({'a"b': 1}, "bad filter key"),
    ({"a": [1]}, "must be a string, number or boolean"),
    ({"a": math.nan}, "must be a string, number or boolean"),
    ({"a": math.inf}, "must be a string, number or boolean"),
])
def test_both_stores_refuse_the_same_filters_with_their_own_error(flt: dict[str, object],
                                                                  says: str) -> None:
    with pytest.raises(BadMemory, match=says):
        memory_filter(flt)
    with pytest.raises(BadVector, match=says):
        vector_filter(flt)
