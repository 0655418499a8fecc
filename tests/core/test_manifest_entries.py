"""Manifest entries naming a handler, and when a plugin's are in force (``granted_entries``)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from omnicore.core.manifest_entries import granted_entries, handler_entries
from omnicore.errors import ConfigError, PluginNotFound
from omnicore.logging import get_logger

log = get_logger("omnicore.test_manifest_entries")


@dataclass(frozen=True)
class _Entry:
    handler: str


@dataclass(frozen=True)
class _View:
    state: str = "loaded"
    handlers: Sequence[str] = ("tick",)
    granted: Mapping[str, Mapping[str, Any]] = field(default_factory=lambda: {"tasks": {}})
    manifest: Mapping[str, Any] = field(
        default_factory=lambda: {"schedules": [{"handler": "tick"}]})


def _read(plugin: str, manifest: Mapping[str, Any], handlers: Sequence[str]) -> list[_Entry]:
    return handler_entries(manifest, "schedules",
                           lambda item, where: _Entry(item["handler"]), handlers)


def _entries(view: _View | None) -> list[_Entry]:
    def lookup(name: str) -> _View:
        if view is None:
            raise PluginNotFound(f"no plugin {name!r}", plugin=name)
        return view

    return granted_entries(lookup, "clock", "schedules", "tasks", _read, log,
                           ungranted="declares schedules but is not granted 'tasks'",
                           broken="its schedules do not run")


def test_a_loaded_granted_plugin_has_its_entries() -> None:
    assert _entries(_View()) == [_Entry("tick")]


@pytest.mark.parametrize("view", [None, _View(state="failed"), _View(manifest={})],
                         ids=["not found", "not loaded", "declares none"])
def test_no_entries_and_nothing_said(view: _View | None,
                                     caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        assert _entries(view) == []
    assert caplog.records == []


def test_without_the_grant_the_operator_is_told(caplog: pytest.LogCaptureFixture) -> None:
    assert _entries(_View(granted={})) == []
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.WARNING, "plugin 'clock' declares schedules but is not granted 'tasks'")]


def test_a_bad_entry_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    bad = _View(manifest={"schedules": [{"handler": "missing"}]})
    with pytest.raises(ConfigError):
        _read("clock", bad.manifest, bad.handlers)          # the load-time check raises
    assert _entries(bad) == []
    [record] = caplog.records
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("plugin 'clock' manifest schedules[0]: no handler")
    assert record.getMessage().endswith("; its schedules do not run")
