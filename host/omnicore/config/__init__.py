"""Layered, validated configuration: omnicore.yaml → OMNICORE_* env → overrides."""

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
