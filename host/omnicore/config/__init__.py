"""Layered, validated configuration: omnicore.yaml → OMNICORE_* env → overrides.

The names below load on first use (PEP 562): ``omnicore.config.watch``, which the plugin
folder uses, must not pull in the pydantic schema with its package, or a one-off
``omnicore call FILE.wasm`` pays 0.1 s for a config it never reads.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from omnicore.config.loader import ENV_PREFIX, load_config, render_config
    from omnicore.config.schema import (
        CircuitConfig,
        LimitsConfig,
        LogConfig,
        OmniConfig,
        PluginConfig,
        SandboxConfig,
    )

__all__ = [
    "ENV_PREFIX",
    "CircuitConfig",
    "LimitsConfig",
    "LogConfig",
    "OmniConfig",
    "PluginConfig",
    "SandboxConfig",
    "load_config",
    "render_config",
]

_HOME = {"ENV_PREFIX": "loader", "load_config": "loader", "render_config": "loader"}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'omnicore.config' has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{_HOME.get(name, 'schema')}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
