"""What the host tells about one plugin: its state and a snapshot of everything else."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from omnicore.plugins.breaker import BreakerState
from omnicore.plugins.stats import StatsSnapshot
from omnicore.sandbox.limits import Limits

__all__ = ["PluginInfo", "PluginState"]

#: ``loaded`` serves calls; ``needs-grant`` waits for an operator's grant; ``failed`` could
#: not load (``last_error`` says why); ``disabled`` by the operator; ``circuit-open`` and
#: ``half-open`` are a loaded plugin whose breaker tripped; ``compiling``: a file of the
#: folder being compiled while others already serve (it loads next, or fails).
PluginState = Literal["loaded", "needs-grant", "failed", "disabled", "circuit-open",
                      "half-open", "compiling"]


@dataclass(frozen=True)
class PluginInfo:
    """A snapshot of one plugin as the host sees it (for code, CLI and console)."""

    name: str
    state: PluginState
    source: str | None
    sha256: str | None = None
    size: int | None = None
    version: str | None = None
    description: str = ""
    handlers: tuple[str, ...] = ()
    requested: tuple[str, ...] = ()
    granted: dict[str, dict[str, Any]] = field(default_factory=dict)
    missing: tuple[str, ...] = ()
    limits: Limits | None = None
    config: dict[str, Any] = field(default_factory=dict)
    stats: StatsSnapshot | None = None
    breaker: BreakerState = "closed"
    last_error: str | None = None
    #: The file changed but its new contents failed to load; the previous version serves.
    stale: bool = False
    loaded_at: float | None = None
    manifest: dict[str, Any] = field(default_factory=dict)
    #: The plugin's kind: ``"1"`` (omnicore ABI v1), ``"extism"`` or ``"component"``.
    abi: str | None = None
    #: A component's WIT world, one line per export and import (empty for core modules).
    world: tuple[str, ...] = ()
    #: Which source won the name: ``catalog`` (published to the app's store), ``file`` (the
    #: plugin folder, or a file given to ``load()``) or ``bytes``.
    origin: str = "file"
    #: The folder's file of the same name that the catalog's version is loaded over.
    shadows: str | None = None

    @property
    def callable(self) -> bool:
        """Whether a call would enter the guest now (loaded or probing)."""
        return self.state in ("loaded", "half-open")

    def as_dict(self) -> dict[str, Any]:
        """A JSON-friendly view."""
        return {
            "name": self.name,
            "state": self.state,
            "source": self.source,
            "sha256": self.sha256,
            "size": self.size,
            "version": self.version,
            "description": self.description,
            "handlers": list(self.handlers),
            "requested": list(self.requested),
            "granted": {k: dict(v) for k, v in self.granted.items()},
            "missing": list(self.missing),
            "limits": self.limits.as_dict() if self.limits else None,
            "stats": self.stats.as_dict() if self.stats else None,
            "breaker": self.breaker,
            "last_error": self.last_error,
            "stale": self.stale,
            "loaded_at": self.loaded_at,
            "origin": self.origin,
            "shadows": self.shadows,
        }
