"""The rate limiter example (plugins/ratelimit/go, Go SDK's ``omnicore.Redis``) on a real
redis-server (tests/dbservers.py) through the host's ``omnicore:redis`` and a redis connector
whose password only the host holds: INCR + EXPIRE under the plugin's key prefix."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from omnicore.app import OmniApp
from omnicore.errors import GuestError
from omnicore.toolchains import build
from tests.db_fixtures import redis_server  # noqa: F401 - a fixture
from tests.dbservers import Redis, free_port

ROOT = Path(__file__).resolve().parents[1]
GRANT = {"redis": {"connectors": ["cache"]}}


@pytest.fixture(scope="module")
def ratelimit_wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(ROOT / "plugins" / "ratelimit" / "go", tmp_path_factory.mktemp("ratelimit"))


@pytest.fixture
def load(make_app: Callable[..., OmniApp], redis_server: Redis,  # noqa: F811
         ratelimit_wasm: Path) -> Callable[..., OmniApp]:
    """``load(port=)``: an app whose ``cache`` connector is the server (or a closed port), the
    plugin granted it. The server is emptied first."""
    redis_server.client().flushall()

    made: list[OmniApp] = []

    def make(port: int | None = None) -> OmniApp:
        app = make_app(f"app-{len(made)}", builtin_extensions=None, overrides={
            "sandbox": {"watch": False},
            "connectors": {"cache": {"kind": "redis",
                                     "url": f"redis://127.0.0.1:{port or redis_server.port}/0",
                                     "secret": "cache-password"}}})
        made.append(app)
        app.start()
        app.secrets.set("cache-password", redis_server.password)
        app.plugins.load(ratelimit_wasm, grants=GRANT, limits={"timeout_ms": 10000})
        return app

    return make


def hit(app: OmniApp, **request: Any) -> Any:
    return app.plugins.call_json("ratelimit-go", "hit", request)


def test_hits_are_counted_in_a_window_that_expires(load: Callable[..., OmniApp],
                                                   redis_server: Redis) -> None:  # noqa: F811
    app = load()
    answers = [hit(app, key="alice", limit=2, window_s=60) for _ in range(3)]
    assert [(a["allowed"], a["remaining"], a["count"]) for a in answers] == [
        (True, 1, 1), (True, 0, 2), (False, 0, 3)]
    assert all(0 < a["reset_s"] <= 60 for a in answers)
    # On the server: one counter, under the plugin's prefix, with the window's expiry.
    client = redis_server.client()
    assert client.keys("*") == [b"omnicore:ratelimit-go:hits:alice"]
    assert client.get("omnicore:ratelimit-go:hits:alice") == b"3"
    assert 0 < client.ttl("omnicore:ratelimit-go:hits:alice") <= 60
    # Another key has its own window; a counter whose expiry was lost gets one back.
    assert hit(app, key="bob", limit=2, window_s=60)["count"] == 1
    client.persist("omnicore:ratelimit-go:hits:alice")
    assert hit(app, key="alice", limit=2, window_s=30)["reset_s"] == 30
    assert 0 < client.ttl("omnicore:ratelimit-go:hits:alice") <= 30


def test_a_key_cannot_leave_the_prefix(load: Callable[..., OmniApp],
                                       redis_server: Redis) -> None:  # noqa: F811
    app = load()
    redis_server.client().set("victim", "1")
    hit(app, key="../../victim", limit=5, window_s=60)
    hit(app, key="*", limit=5, window_s=60)
    assert redis_server.client().get("victim") == b"1"
    assert sorted(redis_server.client().keys("omnicore:ratelimit-go:*")) == [
        b"omnicore:ratelimit-go:hits:*", b"omnicore:ratelimit-go:hits:../../victim"]


def test_bad_input_and_a_server_that_is_down(load: Callable[..., OmniApp]) -> None:
    app = load()
    with pytest.raises(GuestError, match="limit must be at least 1"):
        hit(app, key="a", limit=0, window_s=1)
    down = load(port=free_port())
    with pytest.raises(GuestError) as info:
        hit(down, key="a", limit=1, window_s=1)
    assert "UNAVAILABLE" in str(info.value) and "cache" in str(info.value)
