"""How a plugin and the plugin folder show in ``app.health``, decided from state alone."""

from __future__ import annotations

from omnicore.modules.health import HealthStatus
from omnicore.plugins.folder import PluginFolder
from omnicore.plugins.info import PluginInfo

__all__ = ["folder_health", "plugin_health"]


def plugin_health(info: PluginInfo | None) -> tuple[HealthStatus, str]:
    """One plugin as a health component."""
    if info is None:
        return HealthStatus.HEALTHY, "unloaded"
    stats = info.stats.as_dict() if info.stats else {}
    counts = f"{stats.get('calls', 0)} calls, {stats.get('errors', 0)} errors"
    if info.state == "loaded":
        if info.stale:
            return HealthStatus.DEGRADED, info.last_error or "reload failed"
        return HealthStatus.HEALTHY, f"{info.version}; {counts}"
    if info.state == "disabled":
        return HealthStatus.HEALTHY, "disabled by the operator"
    if info.state == "needs-grant":
        return HealthStatus.DEGRADED, info.last_error or "needs grant"
    if info.state == "compiling":
        return HealthStatus.DEGRADED, "compiling"
    if info.state == "half-open":
        return HealthStatus.DEGRADED, f"circuit half-open, probing; {counts}"
    if info.state == "circuit-open":
        return HealthStatus.UNHEALTHY, f"circuit open: {info.last_error}"
    return HealthStatus.UNHEALTHY, f"failed: {info.last_error}"


def folder_health(folder: PluginFolder, watch: bool, required: bool
                  ) -> tuple[HealthStatus, str]:
    """The watched plugin folder as a health component."""
    if not watch:
        return HealthStatus.HEALTHY, f"{folder.path} loaded once (sandbox.watch is off)"
    if not folder.path.is_dir():
        detail = f"plugins_dir {folder.path} does not exist; nothing is watched"
        if required:
            return HealthStatus.DEGRADED, detail
        return HealthStatus.HEALTHY, detail + " (default path)"
    if folder.mode == "events":
        return HealthStatus.HEALTHY, f"watching {folder.path}"
    if folder.mode == "polling":
        return HealthStatus.DEGRADED, f"polling {folder.path} (file events unavailable)"
    return HealthStatus.UNHEALTHY, f"the watcher of {folder.path} stopped"
