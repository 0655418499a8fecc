"""Fixtures shared by the whole suite; area-specific ones live in tests/<area>/conftest.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.app import OmniApp
from omnicore.core.lifecycle import State

# The wasm fixtures (`wat`, `engine`, `registry`, `make`, `echo`) for every area that runs
# plugins.
pytest_plugins = ["tests.sandbox_fixtures"]


@pytest.fixture(autouse=True)
def _no_omnicore_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's OMNICORE_* config variables must not change test outcomes.

    Tool settings that share the prefix (OMNICORE_CARGO_TARGET_DIR...) are kept.
    """
    import os

    from omnicore.config import OmniConfig

    for var in list(os.environ):
        rest = var.removeprefix("OMNICORE_")
        if rest != var and ("__" in rest or rest.lower() in OmniConfig.model_fields
                            or rest in ("APPDIR", "DEBUG")):
            monkeypatch.delenv(var)
    # A test's host (and every `omnicore run` it starts) takes a free console port, never
    # the default 8470 that a developer's own host may hold.
    monkeypatch.setenv("OMNICORE_CONSOLE__PORT", "0")


@pytest.fixture(autouse=True)
def _plugin_logs_of_earlier_tests_delivered() -> None:
    """Plugin log lines reach Python logging from a thread, after their call: those of an
    earlier test are delivered before this one starts, so its ``caplog`` sees only its own."""
    from omnicore.sandbox.pluginlog import flush

    flush()


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., OmniApp]]:
    """Build OmniApps whose data dir is under tmp_path; any still running are stopped after.

    No entry-point or built-in extensions unless asked (``builtin_extensions=None`` loads the
    built-ins), so core tests do not depend on the sandbox.
    """
    apps: list[OmniApp] = []

    def factory(name: str = "test-app", **kwargs: Any) -> OmniApp:
        overrides = {"data_dir": str(tmp_path / name / "data"),
                     "plugins_dir": str(tmp_path / name / "plugins"),
                     **kwargs.pop("overrides", {})}
        kwargs.setdefault("entry_points", False)
        kwargs.setdefault("builtin_extensions", [])
        app = OmniApp(name, overrides=overrides, environ=kwargs.pop("environ", {}), **kwargs)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        if app.state is State.RUNNING and app._driver.threaded:
            app.stop(grace=0)


def _fail_under_ci(report: pytest.TestReport | pytest.CollectReport, what: str) -> None:
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
    report.outcome = "failed"
    if hasattr(report, "wasxfail"):  # else pytest still counts it as an expected failure
        del report.wasxfail
    report.longrepr = f"{what} under CI (CI=true forbids skips and xfails): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI every toolchain is installed, so a skip can only hide a broken setup, and an
    expected failure hides a known bug: fail both."""
    import os

    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and (report.skipped or hasattr(report, "wasxfail")):
        _fail_under_ci(report, "xfail" if hasattr(report, "wasxfail") else "skipped")


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Iterator[None]:
    """A module-level skip (``pytest.skip(allow_module_level=True)``) fails under CI too."""
    import os

    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped:
        _fail_under_ci(report, "skipped at collection")


@pytest.fixture(scope="session")
def module_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One compiled-module cache (``sandbox.cache_dir``) for the engines and apps of this run
    that load the same plugin bytes: a Ruby plugin compiles in 15-25 s, a Python component in
    5-20 s, a Go one in seconds; from here each loads in milliseconds.

    Sharing cannot hand a test a wrong module: an entry is named by the wasm's sha256 and the
    engine's config key (wasmtime version, fuel, pooling, baseline: all that changes the
    compiled code) and checked against its checksum before use (sandbox/modcache.py). Tests
    about the cache itself (cold compiles, tiers, damaged entries, precompile) keep a fresh
    directory of their own.
    """
    path = tmp_path_factory.mktemp("module-cache")
    path.chmod(0o700)  # check_cache_dir refuses a directory others can write
    return path


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[Any]:
    """One private PostgreSQL cluster for the session (tests/pgcluster.py); each test that
    needs a database makes its own with ``pg_cluster.database(name)``."""
    from tests.pgcluster import Cluster

    cluster = Cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def pg_url(pg_cluster: Any, request: pytest.FixtureRequest) -> str:
    """A fresh, empty database for this test, owned by a role that is not a superuser."""
    import re
    import uuid

    name = re.sub(r"[^a-z0-9_]", "_", request.node.name.lower())[:40] + "_" + uuid.uuid4().hex[:6]
    return str(pg_cluster.database(name))
