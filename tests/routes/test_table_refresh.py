"""The route table's poll (routes/server.py ``RoutesServer.table``, every REFRESH_S of a host
serving): with nothing changed it builds nothing (issue 65, deliverable 6: the config's routes
dumped and the plugins' proposals read on every poll were some of a request's instructions
under callgrind's pace); a sidecar written, edited or removed is still seen on the next
poll."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from omnicore.config.routes import RouteConfig
from omnicore.routes import RoutesServer
from tests.routes.conftest import RouteHost
from tests.routes.test_routes import route
from tests.waiting import eventually


def test_a_poll_with_nothing_changed_builds_nothing_and_a_sidecar_is_still_seen(
        route_host: Callable[..., RouteHost], monkeypatch: pytest.MonkeyPatch) -> None:
    host = route_host(routes={"one": route("echo", "/one")})
    server = RoutesServer(host.app, lambda _token: None)
    table = server.table()
    dumped: list[str] = []
    dump = RouteConfig.model_dump

    def counted(self: RouteConfig, **kwargs: Any) -> dict[str, Any]:
        dumped.append("one")
        return dump(self, **kwargs)

    monkeypatch.setattr(RouteConfig, "model_dump", counted)

    def poll() -> list[str]:
        server._checked = float("-inf")  # the poll is due
        return [r.name for r in server.table().routes]

    for _ in range(5):
        assert poll() == ["one"]
        assert server.table() is table
    assert dumped == []  # (5 before: the config's routes dumped on every poll)
    sidecar = host.root / "plugins" / "web.yaml"
    sidecar.write_text("routes:\n  side: {handler: echo, path: /side, auth: public}\n")
    eventually(lambda: poll() == ["one", "side"], "the sidecar's route")
    sidecar.write_text("routes:\n  two: {handler: echo, path: /two, auth: public}\n")
    eventually(lambda: poll() == ["one", "two"], "the edited sidecar's route")
    sidecar.unlink()
    eventually(lambda: poll() == ["one"], "the sidecar gone")
    (host.root / "plugins" / "web.toml").write_text(
        '[routes.three]\nhandler = "echo"\npath = "/three"\nauth = "public"\n')
    eventually(lambda: poll() == ["one", "three"], "a .toml sidecar")
