"""Stateful capabilities in a plugin host without an app (capabilities/standalone.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnicore.capabilities import standalone
from omnicore.errors import ConfigError
from omnicore.sandbox.capability import PluginContext
from omnicore.sandbox.pluginlog import PluginLog


def _ctx(data_dir: Path | None) -> PluginContext:
    return PluginContext(plugin="p", grant={}, config={}, log=PluginLog("p"), data_dir=data_dir)


def test_data_dir_is_the_hosts_or_a_config_error_naming_plugin_and_capability(
        tmp_path: Path) -> None:
    assert standalone.data_dir(_ctx(tmp_path), "kv") == tmp_path
    with pytest.raises(ConfigError, match="plugin 'p' is granted kv, but this plugin host "
                                          "has no data_dir to keep it in \\(pass") as exc:
        standalone.data_dir(_ctx(None), "kv", keep="it", hint=" (pass data_dir=...)")
    assert exc.value.key == "data_dir"


def test_needs_app_refuses_the_grant_when_bound() -> None:
    refuse = standalone.needs_app("tasks", "which run in an app", key="grant.tasks")
    with pytest.raises(ConfigError, match="plugin 'p' is granted tasks, which run in an app"
                       ) as exc:
        refuse(_ctx(None))
    assert exc.value.key == "grant.tasks"
