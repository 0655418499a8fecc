"""The charts' sampler is an app module: the console adds it and depends on it, the app's
lifecycle starts and stops it, and a storage failure during a sample costs that sample only
(logged once), never the sampling."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicore import OmniApp
from omnicore.console import ConsoleModule
from omnicore.console.sampler import ChartSampler
from omnicore.console.series import HOST
from omnicore.core.lifecycle import State
from omnicore.core.module import start_order


@pytest.fixture
def app(tmp_path: Path) -> Iterator[OmniApp]:
    app = OmniApp("sampled", overrides={"data_dir": str(tmp_path / "data"),
                                        "plugins_dir": str(tmp_path / "plugins"),
                                        "console": {"port": 0}})
    yield app
    if app.state is State.RUNNING:
        app.stop()


def test_the_console_adds_the_sampler_and_the_lifecycle_runs_it(app: OmniApp) -> None:
    console = ConsoleModule()
    app.add_module(console)
    sampler = app.get_module("charts", ChartSampler)
    order = [m.name for m in start_order(app.modules)]
    assert order.index("charts") < order.index("console")
    app.start()
    try:
        running = sampler.state
        assert console.console is not None and console.console.history is sampler.series
    finally:
        app.stop()
    assert (running, sampler.state, sampler._task) == (State.RUNNING, State.STOPPED, None)


def test_a_storage_error_costs_the_sample_not_the_sampling(
        app: OmniApp, caplog: pytest.LogCaptureFixture) -> None:
    sampler = ChartSampler()
    app.add_module(sampler)
    sampler.series.period_s = 3600.0  # the background turn takes its first sample only
    app.start()
    assert sampler.tick(now=1000.0)
    database = app.data_dir / "omnicore.db"
    # A real failure under the storage interface: the queue's table vanishes for a while
    # (another process's migration gone wrong), so reading the job counts fails in SQLite.
    with sqlite3.connect(database) as other:
        other.execute("ALTER TABLE jobs RENAME TO jobs_away")
    with caplog.at_level(logging.INFO, logger="omnicore"):
        failed = [sampler.tick(now=1010.0 + 10 * i) for i in range(3)]
        with sqlite3.connect(database) as other:
            other.execute("ALTER TABLE jobs_away RENAME TO jobs")
        app.jobs.enqueue("nobody", "run", b"", delay_s=3600)
        samples = sampler.series.samples
        assert sampler.tick(now=1050.0) and sampler.tick(now=1060.0)
    assert failed == [False, False, False]
    assert sampler.series.samples == samples + 2
    said = [(r.levelno, r.getMessage()) for r in caplog.records
            if r.getMessage().startswith("charts:")]
    assert [level for level, _ in said] == [logging.WARNING, logging.INFO]
    assert "a sample failed" in said[0][1] and "no such table: jobs" in said[0][1]
    assert "sampling works again" in said[1][1]
    points = dict(sampler.series.points(HOST, "15m", now=1065.0))
    assert points[1060.0] is not None and points[1060.0][1] == 1.0  # one job queued
    assert sampler.state is State.RUNNING and sampler._task is not None \
        and not sampler._task.done()
