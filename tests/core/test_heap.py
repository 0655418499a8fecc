"""core/heap.py: a host process's long-lived objects frozen out of full collections, only
where the process's owner turned it on, and what became garbage since collected at the next
settle (issue 62)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from omnicore.core import heap


@pytest.fixture
def managed() -> Iterator[None]:
    heap.manage()
    try:
        yield
    finally:
        heap.manage(False)


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_settle_does_nothing_where_the_heap_is_not_managed() -> None:
    assert not heap.managed()
    before = gc.get_freeze_count()
    assert heap.settle() is False
    assert gc.get_freeze_count() == before


def test_settle_freezes_what_lives_and_collects_later_garbage_at_the_next(managed: None) -> None:
    kept = _Cycle()
    assert heap.settle()
    assert gc.get_freeze_count() > 0
    # Frozen: a full collection no longer walks it, so a cycle let go now is not collected...
    gone = weakref.ref(kept)
    del kept
    gc.collect()
    assert gone() is not None
    # ...until the next settle, which unfreezes first.
    assert heap.settle()
    assert gone() is None


def test_turning_it_off_unfreezes(managed: None) -> None:
    heap.settle()
    heap.manage(False)
    assert gc.get_freeze_count() == 0
