"""Events the plugin host publishes on ``app.events`` (topics ``plugin.*``)."""

from __future__ import annotations

from dataclasses import dataclass

from omnicore.core.events import Event

__all__ = ["PluginCircuitChanged", "PluginFailed", "PluginLoaded", "PluginReloaded",
           "PluginSettingsChanged", "PluginStateChanged", "PluginUnloaded"]


@dataclass(frozen=True, slots=True, kw_only=True)
class _PluginHostEvent(Event):
    """What every event of the plugin host names: the plugin (by name)."""

    plugin: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginLoaded(_PluginHostEvent, topic="plugin.loaded"):
    """A wasm plugin was loaded and is callable."""

    version: str = ""
    path: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginUnloaded(_PluginHostEvent, topic="plugin.unloaded"):
    """A wasm plugin was unloaded (file removed, replaced, or app stopping)."""

    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginFailed(_PluginHostEvent, topic="plugin.failed"):
    """A wasm plugin could not be loaded or was taken out of service."""

    error: str
    path: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class _PluginMoved(_PluginHostEvent):
    """What every event of a plugin's move names: where from (``old``) and to (``new``)."""

    old: str
    new: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginStateChanged(_PluginMoved, topic="plugin.state_changed"):
    """A wasm plugin's state changed (e.g. ready → needs_grant)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginReloaded(_PluginHostEvent, topic="plugin.reloaded"):
    """A plugin's file changed and its new version now serves new calls."""

    version: str = ""
    path: str = ""
    sha256: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginCircuitChanged(_PluginMoved, topic="plugin.circuit_changed"):
    """A plugin's circuit breaker moved from ``old`` to ``new`` (closed/open/half-open)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PluginSettingsChanged(_PluginHostEvent, topic="plugin.settings_changed"):
    """The operator's settings of a plugin changed (on this instance or another) and were
    applied here; what they decide beside its runtime (its MCP tools) may differ too."""

