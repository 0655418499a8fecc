from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from omnicore.app import OmniApp
from omnicore.core.events import HealthChanged
from omnicore.core.module import Module
from omnicore.modules.health import HealthModule, HealthStatus

MakeApp = Callable[..., OmniApp]


def test_component_results_and_worst_wins(make_app: MakeApp) -> None:
    app = make_app()
    h = app.health
    h.register_check("db", lambda: True)
    h.register_check("cache", lambda: (HealthStatus.DEGRADED, "evicting"))
    h.register_check("none", lambda: None)
    app.start()
    r = h.check()
    assert r.status is HealthStatus.DEGRADED and not r.healthy
    assert r.components["db"].status is HealthStatus.HEALTHY
    assert r.components["cache"].detail == "evicting"
    assert r.components["none"].status is HealthStatus.HEALTHY
    assert all(c.latency_ms >= 0 for c in r.components.values())
    d = r.to_dict()
    assert d["status"] == "degraded" and d["components"]["cache"]["detail"] == "evicting"
    h.register_check("disk", lambda: False)
    assert h.check().status is HealthStatus.UNHEALTHY
    h.unregister_check("disk")
    h.unregister_check("cache")
    assert h.check().status is HealthStatus.HEALTHY
    app.stop()


def test_raising_or_bad_check_is_unhealthy_not_fatal(make_app: MakeApp) -> None:
    app = make_app()
    app.health.register_check("flaky", lambda: 1 / 0)
    app.health.register_check("weird", lambda: 3.5)  # type: ignore[arg-type,return-value]
    app.start()
    r = app.health.check()
    assert r.components["flaky"].status is HealthStatus.UNHEALTHY
    assert r.components["flaky"].detail == "ZeroDivisionError: division by zero"
    assert "must return HealthStatus" in r.components["weird"].detail
    assert r.components["app"].status is HealthStatus.HEALTHY
    app.stop()
    with pytest.raises(TypeError):
        app.health.register_check("x", 5)  # type: ignore[arg-type]


def test_latency_is_measured(make_app: MakeApp) -> None:
    app = make_app()
    app.health.register_check("slow", lambda: time.sleep(0.02))
    r = app.health.check()
    assert r.components["slow"].latency_ms >= 20


def test_builtin_checks_follow_app_and_modules(make_app: MakeApp) -> None:
    app = make_app()
    assert app.health.check().components["app"].status is HealthStatus.DEGRADED  # created
    app.start()
    assert app.health.check().status is HealthStatus.HEALTHY
    app.stop()
    r = app.health.check()
    assert r.components["app"].status is HealthStatus.UNHEALTHY and r.components["app"].detail == \
        "stopped"


def test_failed_module_makes_app_unhealthy(make_app: MakeApp) -> None:
    class Broken(Module):
        def start(self) -> None:
            raise RuntimeError("no disk")

    app = make_app()
    app.add_module(Broken())
    with pytest.raises(Exception, match="no disk"):
        app.start()
    r = app.health.check()
    assert r.components["modules"].status is HealthStatus.UNHEALTHY
    assert "broken" in r.components["modules"].detail


def test_health_changed_event(make_app: MakeApp) -> None:
    app = make_app()
    changes: list[HealthChanged] = []
    app.events.subscribe(HealthChanged, changes.append)
    app.start()
    app.health.check()
    state = {"ok": True}
    app.health.register_check("dep", lambda: state["ok"])
    app.health.check()
    assert changes == []
    state["ok"] = False
    app.health.check()
    state["ok"] = True
    app.health.check()
    assert [(c.old, c.new) for c in changes] == [("healthy", "unhealthy"),
                                                ("unhealthy", "healthy")]
    assert changes[0].unhealthy == ("dep",)
    app.stop()


def test_standalone_health_module_works_without_app() -> None:
    h = HealthModule()
    h.register_check("x", lambda: True)
    assert h.check().status is HealthStatus.HEALTHY
    assert "x" in str(h.check())
