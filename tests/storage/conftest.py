"""The backends every storage contract suite runs on, and the stores each one serves.

A backend joins by adding one entry to BACKENDS, and joins a store's contract by listing the
store in STORES. ``test_contract.py`` (kv, jobs, schedules, events) runs on every backend;
each ``test_contract_<store>.py`` marks its module ``pytest.mark.store("<store>")`` and runs
on the backends that serve it. All of them take the ``storage`` fixture and use nothing but
the interfaces of ``omnicore.storage``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from omnicore.storage import SQLiteStorage, Storage


def _postgres(request: pytest.FixtureRequest, tmp: Path) -> Storage:
    from omnicore.storage.postgres import PostgresStorage

    return PostgresStorage(request.getfixturevalue("pg_url"))


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Storage]] = {
    "sqlite": lambda request, tmp: SQLiteStorage(tmp / "omnicore.db"),
    "postgres": _postgres,
}
#: The stores beyond kv, jobs, schedules and events that each backend serves.
STORES: dict[str, frozenset[str]] = {
    "sqlite": frozenset({"memory", "vectors", "secrets", "workflows", "users", "audit",
                         "plugin_settings", "catalog"}),
    "postgres": frozenset({"memory", "vectors", "secrets", "users", "audit", "workflows",
                           "plugin_settings", "catalog"}),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "store(name): a contract suite of one store; it runs "
                                       "on the backends whose STORES list it")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "storage" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("store")
    names = sorted(b for b in BACKENDS if marker is None or marker.args[0] in STORES[b])
    metafunc.parametrize("storage", names, indirect=True)


@pytest.fixture
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    s = BACKENDS[request.param](request, tmp_path)
    yield s
    s.close()
