"""tests/schedule.py: a parallel run hands out its costliest modules first, each module's tests
in their own order, and a run in one process keeps the collection's order."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tests.schedule import pytest_collection_modifyitems


def _item(nodeid: str, *needs: str) -> Any:
    marks = [SimpleNamespace(name=n) for n in needs]
    return SimpleNamespace(nodeid=nodeid, iter_markers=lambda: iter(marks))


def _collection() -> list[Any]:
    return [
        _item("tests/a.py::one"), _item("tests/a.py::two"),
        _item("tests/b.py::build", "toolchain"), _item("tests/b.py::plain"),
        _item("tests/c.py::image", "container", "toolchain"),
        _item("tests/d.py::many[1]", "postgres"), _item("tests/d.py::many[2]", "postgres"),
        _item("tests/e.py::also_cheap"),
    ]


def _config(workers: int | None) -> Any:
    return SimpleNamespace(option=SimpleNamespace(numprocesses=workers))


def test_a_parallel_run_starts_with_the_costliest_modules_each_in_its_own_order() -> None:
    items = _collection()
    pytest_collection_modifyitems(_config(2), items)
    assert [i.nodeid for i in items] == [
        "tests/c.py::image",                                # a container: a minute
        "tests/b.py::build", "tests/b.py::plain",           # a build, in the module's order
        "tests/d.py::many[1]", "tests/d.py::many[2]",       # two database tests
        "tests/a.py::one", "tests/a.py::two",               # the cheap ones as collected
        "tests/e.py::also_cheap",
    ]


@pytest.mark.parametrize("workers", [None, 0])
def test_one_process_keeps_the_collections_order(workers: int | None) -> None:
    items = _collection()
    pytest_collection_modifyitems(_config(workers), items)
    assert [i.nodeid for i in items] == [i.nodeid for i in _collection()]
