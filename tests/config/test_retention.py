"""``retention.*``: durations as the rest of the product writes them, ``0``/``never`` for ever,
and a clear refusal of anything else."""

from __future__ import annotations

import pytest

from omnicore.config import load_config
from omnicore.config.durations import parse_duration
from omnicore.errors import ConfigError

DAY = 86400.0


def test_the_defaults_keep_a_week_a_month_and_a_year() -> None:
    retention = load_config(environ={}).retention
    assert retention.keep() == {"jobs": 7 * DAY, "dead_letter": 30 * DAY, "audit": 365 * DAY,
                                "events": 7 * DAY, "workflow_runs": 30 * DAY}
    assert retention.sweep_every == 3600.0 and retention.batch == 1000


def test_durations_and_for_ever() -> None:
    retention = load_config(environ={}, overrides={"retention": {
        "jobs": "12h", "dead_letter": 0, "audit": "never", "events": 90,
        "workflow_runs": "2.5d", "sweep_every": "30m"}}).retention
    assert retention.keep() == {"jobs": 12 * 3600.0, "dead_letter": None, "audit": None,
                                "events": 90.0, "workflow_runs": 2.5 * DAY}
    assert retention.sweep_every == 1800.0


def test_an_environment_variable_sets_one() -> None:
    retention = load_config(environ={"OMNICORE_RETENTION__AUDIT": "90d"}).retention
    assert retention.audit == 90 * DAY


@pytest.mark.parametrize(("key", "value", "says"), [
    ("jobs", "7x", "is not a retention: a duration like 12h, 7d, 90d"),
    ("audit", "-1d", "is not a retention"),
    ("events", True, "is not a retention"),
    ("workflow_runs", "30s", "shorter than a minute"),
    ("sweep_every", "never", "is not a duration like 30m, 1h"),
    ("sweep_every", 0, "is not a duration"),
    ("sweep_every", 0.001, "shorter than a second"),
    ("sweep_every", "500ms", "shorter than a second"),
    ("batch", 0, "greater than 0"),
    ("purge", "7d", "purge"),
])
def test_a_bad_value_is_refused_naming_its_key(key: str, value: object, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(environ={}, overrides={"retention": {key: value}})
    text = str(caught.value)
    assert f"retention.{key}" in text and says in text


def test_the_workflow_durations_are_the_same_grammar() -> None:
    from omnicore.workflows import definition

    assert definition.parse_duration is parse_duration
    assert parse_duration("500ms") == 0.5 and parse_duration("2h") == 7200.0
    with pytest.raises(ValueError, match="must be positive"):
        parse_duration(0)
