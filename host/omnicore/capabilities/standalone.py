"""Stateful capabilities in a plugin host without an app: where their data lives, or why not.

Every stateful built-in's ``CAPABILITY`` serves plugin hosts without an app
(:mod:`omnicore.capabilities.builtin`): kv, vectors and secrets keep their data in the host's
``data_dir``; memory, tasks and events need an app's services and refuse the grant. Both
refusals name the plugin and the capability the same way (``omnicore call`` adds its
``--app DIR`` hint to them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from omnicore.errors import ConfigError
from omnicore.sandbox.capability import PluginContext

__all__ = ["data_dir", "needs_app"]


def data_dir(ctx: PluginContext, name: str, keep: str = "them", hint: str = "") -> Path:
    """The plugin host's ``data_dir``, where capability ``name`` keeps ``keep``; a
    ConfigError (``hint`` after it) when the host has none."""
    if ctx.data_dir is None:
        raise ConfigError(f"plugin '{ctx.plugin}' is granted {name}, but this plugin host has "
                          f"no data_dir to keep {keep} in{hint}", key="data_dir")
    return ctx.data_dir


def needs_app(name: str, why: str, key: str) -> Callable[[PluginContext], NoReturn]:
    """The source of capability ``name`` in a plugin host without an app: binding it raises a
    ConfigError saying ``why`` (config ``key``)."""
    def refuse(ctx: PluginContext) -> NoReturn:
        raise ConfigError(f"plugin '{ctx.plugin}' is granted {name}, {why}", key=key)

    return refuse
