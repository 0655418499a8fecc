"""One plugin's settings, layered: app config ``plugins.<name>`` < sidecar < arguments."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnicore.errors import ConfigError
from omnicore.plugins.sidecar import Sidecar
from omnicore.sandbox import grants as grant_rules
from omnicore.sandbox.limits import Limits

__all__ = ["HeldGrants", "PluginSettings", "deep_merge", "layer"]


@dataclass(frozen=True)
class PluginSettings:
    """The operator's effective settings for one plugin."""

    grants: dict[str, dict[str, Any]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    disabled: bool = False
    sidecar: Path | None = None


def deep_merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``top``; nested mappings merge, everything else is replaced."""
    merged = dict(base)
    for key, value in top.items():
        old = merged.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            merged[key] = deep_merge(old, value)
        else:
            merged[key] = value
    return merged


def _field(settings: Any, key: str) -> Any:
    """Read ``key`` from an app-config plugin entry (a pydantic model or a mapping)."""
    if settings is None:
        return None
    if isinstance(settings, Mapping):
        return settings.get(key)
    return getattr(settings, key, None)


def layer(name: str, *, app: Any, defaults: Limits, sidecar: Sidecar,
          host_grants: Mapping[str, Mapping[str, Any] | None] | None = None,
          grants: Mapping[str, Any] | list[str] | None = None,
          config: Mapping[str, Any] | None = None,
          limits: Mapping[str, Any] | Limits | None = None) -> PluginSettings:
    """Layer app config ``plugins.<name>`` (``app``) < sidecar < grants made on the running
    host (``host_grants``) < explicit arguments."""
    merged_grants = grant_rules.merge(
        grant_rules.DEFAULT_GRANTS,
        grant_rules.normalize(_field(app, "grants"), source=f"plugins.{name}"),
        sidecar.grants,
        host_grants or {},
        grant_rules.normalize(grants, source=f"load('{name}')"))
    merged_config = deep_merge(deep_merge(_field(app, "config") or {}, sidecar.config),
                               config or {})
    try:
        merged_limits = defaults.merged(_field(app, "limits") or {})
        merged_limits = merged_limits.merged(sidecar.limits)
        merged_limits = limits if isinstance(limits, Limits) else merged_limits.merged(limits)
    except ConfigError as exc:
        raise ConfigError(f"plugin '{name}': {exc}", key=exc.key, value=exc.value,
                          source=exc.source) from exc
    return PluginSettings(grants=merged_grants, config=merged_config, limits=merged_limits,
                          disabled=_field(app, "enabled") is False or not sidecar.enabled,
                          sidecar=sidecar.path)


class HeldGrants:
    """The grants a running host gave (``PluginHost.grant`` without ``persist``), by plugin:
    the layer that ranks with ``load()`` arguments and outlives reloads of the plugin's file,
    until the operator decides those capabilities anew."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_plugin: dict[str, grant_rules.GrantLayer] = {}

    def of(self, name: str) -> grant_rules.GrantLayer:
        with self._lock:
            return dict(self._by_plugin.get(name, {}))

    def add(self, name: str, layer: grant_rules.GrantLayer) -> None:
        with self._lock:
            self._by_plugin.setdefault(name, {}).update(layer)

    def forget(self, name: str, capabilities: Iterable[str]) -> None:
        """The newer decision of the operator's settings wins over this host's grants."""
        with self._lock:
            held = self._by_plugin.get(name)
            if held is not None:
                for capability in capabilities:
                    held.pop(capability, None)
