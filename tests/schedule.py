"""The order a parallel run hands test modules to its workers: the costliest first.

pytest-xdist gives each worker consecutive tests in collection order, and more as it drains;
the run ends when the last worker does. Collected alphabetically, a module of minutes (the
image's build, the toolchains' scaffolds, the cluster's outage) can start near the end while
the other worker has nothing left: the run then lasts as long as that module past the rest.
Longest-first ("LPT") scheduling leaves the cheap modules for the end, where they fill the gaps.

A test's cost is told by what it needs, the markers tests/conftest.py derives from its
fixtures and helpers (a build, a container, a browser, a database server): those are what
take seconds, the rest milliseconds. The figures are the typical seconds of one such test in a
whole run on the 2-core CI machine (``--durations=30``); only their order matters much. A
module costs the sum of its tests. Tests keep their order inside a module, so module-scoped
fixtures are set up as often as before. Only a parallel run is reordered: one process takes
as long in any order, and ``pytest tests/x.py`` runs as written.

What each test took is written at the end of a run, to ``build/test-durations.tsv`` (seconds,
setup, call and teardown together, then the test's id, the costliest first), with the seconds
by folder after the run's summary: where a whole run's time goes is read there, not guessed
from the 30 slowest. A fixture whose teardown took over :data:`SLOW_TEARDOWN_S` is named
there too: pytest counts it in the teardown of whichever test ended its scope (a session's
server stopping at a worker's last test), which tells nothing of the cause.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["SECONDS"]

DURATIONS = Path(__file__).resolve().parents[1] / "build" / "test-durations.tsv"

#: A test's typical seconds by the costliest thing it needs; a test needing none of them
#: costs ``SECONDS[None]``.
SECONDS: dict[str | None, float] = {
    "container": 60.0, "toolchain": 6.0, "browser": 6.0, "slow": 5.0,
    "postgres": 1.0, "mysql": 1.0, "redis": 0.5, None: 0.05,
}


def _cost(item: pytest.Item) -> float:
    return max((SECONDS[m.name] for m in item.iter_markers() if m.name in SECONDS),
               default=SECONDS[None])


@pytest.hookimpl(trylast=True)  # after tests/conftest.py has marked what each test needs
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        return
    # The controller and every worker must collect the same order (xdist compares their
    # collections): it depends on the collection alone.
    cost: dict[str, float] = {}
    first: dict[str, int] = {}
    for index, item in enumerate(items):
        module = item.nodeid.split("::", 1)[0]
        cost[module] = cost.get(module, 0.0) + _cost(item)
        first.setdefault(module, index)
    items.sort(key=lambda item: (-cost[m := item.nodeid.split("::", 1)[0]], first[m]))


_took: defaultdict[str, float] = defaultdict(float)

#: Seconds past which a fixture's teardown is named in the summary.
SLOW_TEARDOWN_S = 20.0
_finishing: dict[int, float] = {}  # id(fixturedef) -> when its teardown began (a worker's)
_slow_here: list[tuple[str, str, float]] = []  # (fixture, scope, seconds), not yet reported
_slow: list[tuple[str, str, str, float]] = []  # (test, fixture, scope, seconds), controller's


@pytest.hookimpl(hookwrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    # Finalizers run last-registered first: this one marks the start of the fixture's own.
    key = id(fixturedef)
    fixturedef.addfinalizer(lambda: _finishing.__setitem__(key, time.monotonic()))


def pytest_fixture_post_finalizer(fixturedef: Any, request: pytest.FixtureRequest) -> None:
    began = _finishing.pop(id(fixturedef), None)
    if began is not None and (took := time.monotonic() - began) > SLOW_TEARDOWN_S:
        _slow_here.append((fixturedef.argname, fixturedef.scope, took))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    if call.when == "teardown" and _slow_here:
        # user_properties travel from an xdist worker to the controller with the report.
        outcome.get_result().user_properties.append(("slow_teardowns", list(_slow_here)))
        _slow_here.clear()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # On the controller of a parallel run too: xdist hands it every worker's reports.
    _took[report.nodeid] += report.duration
    for name, value in report.user_properties:
        if name == "slow_teardowns":
            _slow.extend((report.nodeid, *entry) for entry in value)


def _folder(nodeid: str) -> str:
    """``tests/sdk`` for a test of that folder, the file for one of tests/ itself."""
    return "/".join(nodeid.split("::", 1)[0].split("/")[:2])


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    if hasattr(config, "workerinput") or not _took:
        return
    ranked = sorted(_took.items(), key=lambda kv: -kv[1])
    try:
        DURATIONS.parent.mkdir(exist_ok=True)
        DURATIONS.write_text("".join(f"{s:.2f}\t{n}\n" for n, s in ranked), encoding="utf-8")
    except OSError:
        return
    if _slow:
        terminalreporter.write_sep("=", f"fixture teardowns over {SLOW_TEARDOWN_S:g} s")
        for nodeid, fixture, scope, seconds in sorted(_slow, key=lambda e: -e[3]):
            terminalreporter.write_line(f"{seconds:8.1f} s  {fixture} ({scope}), "
                                        f"at the end of {nodeid}")
    if len(ranked) < 500:  # a part of the suite: its file is enough
        return
    by_folder: defaultdict[str, list[float]] = defaultdict(list)
    for nodeid, seconds in ranked:
        by_folder[_folder(nodeid)].append(seconds)
    total = sum(_took.values())
    terminalreporter.write_sep("=", f"seconds by folder, {total:.0f} s in all "
                                    f"({DURATIONS.relative_to(DURATIONS.parents[1])})")
    for folder, times in sorted(by_folder.items(), key=lambda kv: -sum(kv[1]))[:25]:
        terminalreporter.write_line(f"{sum(times):8.0f} s {len(times):5d} tests  {folder}")
