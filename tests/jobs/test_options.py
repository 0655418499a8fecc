"""``capabilities.jobs`` is one typed model (config.schema.JobsConfig): the keys and env
names written down keep working (``capabilities.tasks``, its name before the rename, too),
env values are typed, mistakes are ConfigErrors at load."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from omnicore.config import load_config, render_config
from omnicore.config.schema import JobsConfig, TasksConfig
from omnicore.errors import ConfigError


def test_defaults_are_the_documented_ones() -> None:
    opts = load_config(environ={}).capabilities.jobs
    assert opts == JobsConfig() and TasksConfig is JobsConfig
    assert (opts.workers, opts.lease_s, opts.poll_s, opts.misfire_grace_s,
            opts.max_backoff_ms) == (2, 30.0, 1.0, 5.0, 300_000)
    assert (opts.max_queued, opts.max_attempts, opts.backoff_ms, opts.max_payload_bytes,
            opts.max_delay_ms) == (1000, 5, 1000, 1 << 20, 30 * 24 * 3600 * 1000)


def test_env_variables_set_typed_values() -> None:
    cfg = load_config(environ={"OMNICORE_CAPABILITIES__TASKS__WORKERS": "3",
                               "OMNICORE_CAPABILITIES__TASKS__MAX_ATTEMPTS": "2",
                               "OMNICORE_CAPABILITIES__TASKS__POLL_S": "0.25"})
    opts = cfg.capabilities.tasks
    assert (opts.workers, opts.max_attempts, opts.poll_s) == (3, 2, 0.25)
    assert cfg.source_of("capabilities.tasks.workers") == \
        "env OMNICORE_CAPABILITIES__TASKS__WORKERS"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("workers", 0, "greater than 0"),
    ("lease_s", -1, "greater than 0"),
    ("max_attempts", True, "not a boolean"),
    ("backoff_ms", "soon", "valid integer"),
    ("schedules", ["tick"], "valid dictionary"),
])
def test_bad_values_name_the_key(key: str, value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"capabilities\.jobs\.{key}.*{message}"):
        load_config(environ={}, overrides={"capabilities": {"jobs": {key: value}}})
    with pytest.raises(ConfigError, match=rf"capabilities\.jobs\.{key}.*{message}"):
        load_config(environ={}, overrides={"capabilities": {"tasks": {key: value}}})


def test_a_misspelt_key_is_refused_with_a_hint() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'capabilities\.jobs\.workers'"):
        load_config(environ={}, overrides={"capabilities": {"jobs": {"wrkers": 4}}})


def test_other_capabilities_keep_their_free_form_sections() -> None:
    cfg = load_config(environ={}, overrides={"capabilities": {"vault": {"region": "eu"},
                                                              "kv": {"max_keys": 5}}})
    assert cfg.capabilities.get("vault") == {"region": "eu"}
    assert cfg.capabilities.get("kv", {}) == {"max_keys": 5}
    assert cfg.capabilities.get("memory", {}) == {}
    with pytest.raises(ConfigError, match=r"capabilities\.kv must be a mapping"):
        load_config(environ={}, overrides={"capabilities": {"kv": 5}})


def test_the_old_section_name_still_loads_with_one_deprecation_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "omnicore.yaml").write_text("capabilities:\n  tasks:\n    workers: 3\n"
                                            "    poll_s: 0.5\n  jobs:\n    poll_s: 0.25\n")
    with caplog.at_level(logging.WARNING, logger="omnicore.config"):
        cfg = load_config(tmp_path / "omnicore.yaml", environ={
            "OMNICORE_CAPABILITIES__TASKS__MAX_ATTEMPTS": "2"})
    opts = cfg.capabilities.jobs
    assert (opts.workers, opts.poll_s, opts.max_attempts) == (3, 0.25, 2)  # the new name wins
    assert cfg.capabilities.tasks is opts and cfg.capabilities.get("tasks") is opts
    assert cfg.source_of("capabilities.tasks.max_attempts") == \
        cfg.source_of("capabilities.jobs.max_attempts") == \
        "env OMNICORE_CAPABILITIES__TASKS__MAX_ATTEMPTS"
    assert cfg.source_of("capabilities.jobs.workers").endswith("omnicore.yaml:3")
    lines = [r.getMessage() for r in caplog.records if "deprecat" in r.getMessage()
             or "now called" in r.getMessage()]
    assert len(lines) == 1 and "capabilities.tasks is now called capabilities.jobs" in lines[0]
    assert [k for k, _v, _s in render_config(cfg) if ".tasks." in k] == []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="omnicore.config"):
        load_config(environ={}, overrides={"capabilities": {"jobs": {"workers": 3}}})
    assert not caplog.records  # the new name says nothing
