"""jobs.schedules: parsing ``every``/``cron`` entries, time zones, and the fire after
downtime (the storage's compare-and-set); the schedules running in an app are in
tests/capabilities/test_tasks.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from omnicore.errors import ConfigError
from omnicore.jobs import parse_schedule
from omnicore.storage import JobSpec, SQLiteStorage


def test_schedule_fires_once_after_downtime_with_catch_up_one(tmp_path: Path) -> None:
    store = SQLiteStorage(tmp_path / "db")
    sched = parse_schedule("p", {"handler": "tick", "every": "10s"}, "x")
    assert store.schedules.advance("p", "tick", None, 1000.0, None)
    # the host was down from t=1000 to t=1055: five periods missed, one fire
    spec = JobSpec("p", "tick", b"", 1055.0, source="schedule:tick")
    assert store.schedules.advance("p", "tick", 1000.0, sched.next_after(1055.0), spec)
    assert len(store.queue.list(plugin="p")) == 1
    assert store.schedules.next_fire("p", "tick") == 1065.0
    store.close()


@pytest.mark.parametrize(("raw", "message"), [
    ({"handler": "t", "cron": "61 * * * *"}, "not a valid cron expression"),
    ({"handler": "t", "cron": "* * *"}, "not a valid cron expression"),
    ({"handler": "t", "every": "soon"}, "period of at least 1s"),
    ({"handler": "t", "every": "30s", "cron": "* * * * *"}, "exactly one"),
    ({"handler": "t", "cron": "0 3 * * *", "tz": "Mars/Olympus"}, "unknown time zone"),
    ({"handler": "t", "every": "5s", "catch_up": "all"}, "'none' or 'one'"),
    ({"handler": "t", "every": "5s", "overlap": "queue"}, "'skip' or 'allow'"),
])
def test_malformed_schedules_are_clear_errors(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_schedule("p", raw, "schedules[0]")


def test_a_schedule_skips_a_fire_while_its_previous_job_lives_unless_told_to_overlap() -> None:
    assert parse_schedule("p", {"handler": "t", "every": "5s"}, "x").overlap == "skip"
    assert parse_schedule("p", {"handler": "t", "every": "5s", "overlap": "allow"},
                          "x").overlap == "allow"


def test_cron_schedule_honours_its_time_zone() -> None:
    sched = parse_schedule("p", {"handler": "t", "cron": "0 3 * * *", "tz": "Asia/Tokyo"}, "x")
    # 2024-01-01 00:00 UTC is 09:00 in Tokyo; 03:00 Tokyo next is 18:00 UTC that day.
    assert sched.next_after(1704067200.0) == 1704067200.0 + 18 * 3600
