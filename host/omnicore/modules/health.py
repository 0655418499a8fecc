"""HealthModule: the app's overall health from named component checks.

A check is a callable returning a :class:`HealthStatus`, a ``bool`` (healthy or unhealthy), a
``(HealthStatus, detail)`` pair, or ``None`` (healthy); raising makes it unhealthy with the error
as detail. The overall status is the worst component's. Built-in checks cover the app's
lifecycle, its modules and its Python extensions; other layers add theirs with
:meth:`HealthModule.register_check`.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from omnicore.core.events import HealthChanged
from omnicore.core.lifecycle import State
from omnicore.core.module import Module

if TYPE_CHECKING:
    from omnicore.core.module import ModuleHost

__all__ = ["CheckResult", "ComponentHealth", "HealthModule", "HealthReport", "HealthStatus"]


class HealthStatus(StrEnum):
    """A component's or the app's health, best first."""

    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"


_RANK = {HealthStatus.HEALTHY: 0, HealthStatus.DEGRADED: 1, HealthStatus.UNHEALTHY: 2}

CheckResult = HealthStatus | bool | tuple[HealthStatus, str] | None
Check = Callable[[], CheckResult]


@dataclass(frozen=True, slots=True)
class ComponentHealth:
    """One component's result: status, a human detail, and how long the check took."""

    name: str
    status: HealthStatus
    detail: str = ""
    latency_ms: float = 0.0


@dataclass(frozen=True)
class HealthReport:
    """The result of :meth:`HealthModule.check`."""

    status: HealthStatus
    components: dict[str, ComponentHealth] = field(default_factory=dict)
    checked_at: float = 0.0

    @property
    def healthy(self) -> bool:
        """Whether the overall status is healthy."""
        return self.status is HealthStatus.HEALTHY

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the console's ``/api/health`` body)."""
        return {
            "status": self.status.value,
            "checked_at": self.checked_at,
            "components": {
                n: {"status": c.status.value, "detail": c.detail,
                    "latency_ms": round(c.latency_ms, 4)}
                for n, c in self.components.items()
            },
        }

    def __str__(self) -> str:
        return json.dumps(self.to_dict())


def _normalize(result: CheckResult) -> tuple[HealthStatus, str]:
    if result is None or result is True:
        return HealthStatus.HEALTHY, ""
    if result is False:
        return HealthStatus.UNHEALTHY, "check returned False"
    if isinstance(result, HealthStatus):
        return result, ""
    if (isinstance(result, tuple) and len(result) == 2
            and isinstance(result[0], HealthStatus)):
        return result[0], str(result[1])
    # Bare strings are refused: a typo ("healty") must not pass for a verdict.
    raise TypeError(f"a health check must return HealthStatus, bool, (HealthStatus, detail) "
                    f"or None, not {result!r:.60}")


class HealthModule(Module):
    """Aggregates component checks into one :class:`HealthReport`."""

    name = "health"

    def __init__(self) -> None:
        super().__init__()
        self._checks: dict[str, Check] = {}
        self._lock = threading.Lock()
        self._last: HealthStatus | None = None

    def on_attach(self, app: ModuleHost) -> None:
        self.register_check("app", lambda: _app_status(app))
        self.register_check("modules", lambda: _modules_status(app))
        self.register_check("extensions", lambda: _extensions_status(app))

    def replaces(self, old: Module) -> None:
        if isinstance(old, HealthModule):
            with old._lock:
                for name, fn in old._checks.items():
                    self._checks.setdefault(name, fn)

    def _live(self) -> HealthModule:
        live = self.current
        return live if isinstance(live, HealthModule) else self

    def register_check(self, name: str, fn: Check) -> None:
        """Add (or replace) the check for component ``name``."""
        if not callable(fn):
            raise TypeError(f"health check {name!r} is not callable")
        live = self._live()
        with live._lock:
            live._checks[name] = fn

    def unregister_check(self, name: str) -> None:
        """Remove the check for ``name``; unknown names are ignored."""
        live = self._live()
        with live._lock:
            live._checks.pop(name, None)

    @property
    def check_names(self) -> list[str]:
        """The registered component names."""
        return list(self._live()._checks)

    def check(self) -> HealthReport:
        """Run every check now and return the report; publishes ``HealthChanged`` on change."""
        if self._successor is not None:
            return self._live().check()
        with self._lock:
            checks = list(self._checks.items())
        components: dict[str, ComponentHealth] = {}
        worst = HealthStatus.HEALTHY
        for name, fn in checks:
            t0 = time.perf_counter()
            try:
                status, detail = _normalize(fn())
            except Exception as exc:
                status, detail = HealthStatus.UNHEALTHY, f"{type(exc).__name__}: {exc}"
            latency = (time.perf_counter() - t0) * 1000.0
            components[name] = ComponentHealth(name, status, detail, latency)
            if _RANK[status] > _RANK[worst]:
                worst = status
        report = HealthReport(worst, components, time.time())
        old, self._last = self._last, worst
        if old is not None and old is not worst and self._app is not None:
            bad = tuple(n for n, c in components.items() if c.status is not HealthStatus.HEALTHY)
            self._app.events.publish(HealthChanged(old=old.value, new=worst.value,
                                                   unhealthy=bad))
        return report


def _app_status(app: ModuleHost) -> tuple[HealthStatus, str]:
    state = app.state
    if state is State.RUNNING:
        return HealthStatus.HEALTHY, f"running for {app.uptime:.1f}s"
    if state in (State.STARTING, State.STOPPING, State.CREATED):
        return HealthStatus.DEGRADED, state.value
    return HealthStatus.UNHEALTHY, state.value


def _modules_status(app: ModuleHost) -> tuple[HealthStatus, str]:
    failed = [m.name for m in app.modules if m.state is State.FAILED]
    if failed:
        return HealthStatus.UNHEALTHY, "failed: " + ", ".join(failed)
    if app.state is State.RUNNING:
        idle = [m.name for m in app.modules if m.state is not State.RUNNING]
        if idle:
            return HealthStatus.DEGRADED, "not running: " + ", ".join(idle)
    return HealthStatus.HEALTHY, f"{len(app.modules)} modules"


def _extensions_status(app: ModuleHost) -> tuple[HealthStatus, str]:
    ext = getattr(app, "extensions", None)
    failures = getattr(ext, "failures", {}) if ext is not None else {}
    if failures:
        return HealthStatus.DEGRADED, "; ".join(f"{n}: {why}" for n, why in failures.items())
    return HealthStatus.HEALTHY, f"{len(ext.names) if ext is not None else 0} loaded"
