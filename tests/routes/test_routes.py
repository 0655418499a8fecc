"""Routes the operator grants (specs/http-routes.md §4, §5, §7): auth modes, signed webhooks,
conflicts refused naming both, sidecar routes, manifest proposals, live reload; a real
host and a real HTTP client."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from omnicore.errors import ConfigError, OmniError
from omnicore.routes import sign_github, sign_stripe
from omnicore.routes.table import SourceRoutes, build
from omnicore.sandbox import wasmbin
from tests.routes.conftest import RouteHost, guest_wasm
from tests.routes.test_hostile import route
from tests.waiting import eventually

SECRET = b"It's a Secret to Everybody"


def test_nothing_is_served_without_a_route(route_host: Callable[..., RouteHost]) -> None:
    host = route_host()
    assert host.client.post("/http/echo", content=b"x").status_code == 404
    assert host.client.get("/http/").status_code == 404


def test_github_signed_webhook(route_host: Callable[..., RouteHost]) -> None:
    host = route_host(routes={"gh": route("echo", "/hooks/github", methods=["POST"],
                                          auth="github", secret="gh_hook")})
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    sig = {"X-Hub-Signature-256": sign_github(SECRET, body)}
    # the secret is not set yet: 503, not a pass
    assert host.client.post("/http/hooks/github", content=body, headers=sig).status_code == 503
    host.app.secrets.set("gh_hook", SECRET)
    r = host.client.post("/http/hooks/github", content=body, headers=sig)
    assert r.status_code == 200 and r.content == body
    wrong = {"X-Hub-Signature-256": sign_github(b"not the secret", body)}
    r = host.client.post("/http/hooks/github", content=body, headers=wrong)
    assert r.status_code == 401 and r.json()["error"] == "bad signature"
    assert host.client.post("/http/hooks/github", content=body).status_code == 401
    tampered = body.replace(b"main", b"evil")
    assert host.client.post("/http/hooks/github", content=tampered,
                            headers=sig).status_code == 401


def test_stripe_signed_webhook(route_host: Callable[..., RouteHost]) -> None:
    host = route_host(routes={"stripe": route("echo", "/stripe", methods=["POST"],
                                              auth="stripe", secret="st", tolerance_s=60)})
    host.app.secrets.set("st", SECRET)
    body = b'{"type": "charge.succeeded"}'
    ok = {"Stripe-Signature": sign_stripe(SECRET, body)}
    assert host.client.post("/http/stripe", content=body, headers=ok).status_code == 200
    old = {"Stripe-Signature": sign_stripe(SECRET, body, int(time.time()) - 3600)}
    assert host.client.post("/http/stripe", content=body, headers=old).status_code == 401
    two = {"Stripe-Signature": sign_stripe(b"old secret", body) + ",v1=" +
           sign_stripe(SECRET, body).split("v1=")[1]}
    assert host.client.post("/http/stripe", content=body, headers=two).status_code == 200
    assert host.client.post("/http/stripe", content=body,
                            headers={"Stripe-Signature": "t=1"}).status_code == 401


def test_token_auth_as_the_rest_api(route_host: Callable[..., RouteHost]) -> None:
    host = route_host(routes={"api": route("echo", "/api", auth="token"),
                              "admin": route("echo", "/admin", auth="token", role="admin")})
    assert host.client.get("/http/api").status_code == 401
    assert host.client.get("/http/api", headers={"Authorization": "Bearer nope"}) \
        .status_code == 401
    viewer, admin = host.token("viewer"), host.token("admin")
    r = host.client.post("/http/api", content=b"hi",
                         headers={"Authorization": f"Bearer {viewer}"})
    assert r.status_code == 200 and r.content == b"hi"
    assert "authorization" not in r.headers  # the token never reaches the plugin
    assert host.client.get("/http/admin", headers={"Authorization": f"Bearer {viewer}"}) \
        .status_code == 403
    assert host.client.get("/http/admin", headers={"Authorization": f"Bearer {admin}"}) \
        .status_code == 200
    # a session cookie is no authority on a route
    host.client.cookies.set("omnicore_session", "x")
    assert host.client.get("/http/api").status_code == 401


def test_body_mode_serves_a_plain_handler(route_host: Callable[..., RouteHost]) -> None:
    host = route_host(routes={"plain": route("echo", "/plain", mode="body")})
    r = host.client.post("/http/plain", json={"a": 1})
    assert r.status_code == 200 and r.json() == {"a": 1}
    assert r.headers["content-type"] == "application/json"


def test_conflicts_are_refused_naming_both() -> None:
    def table(**routes: dict[str, Any]) -> None:
        build([SourceRoutes("omnicore.yaml serve.routes", None, routes)])

    with pytest.raises(ConfigError, match=r"route 'a' .* and route 'b' .* both match GET"):
        table(a=route("echo", "/items/{id}"), b=route("echo", "/items/new"))
    with pytest.raises(ConfigError, match=r"route 'a' .* and route 'b'"):
        table(a=route("echo", "/files/{rest...}"), b=route("echo", "/files/x/y"))
    table(a=route("echo", "/items/{id}", methods=["GET"]),
          b=route("echo", "/items/{id}", methods=["PUT"]))  # disjoint methods: fine
    table(a=route("echo", "/a/"), b=route("echo", "/a/{id}"))  # a trailing slash is no id
    with pytest.raises(ConfigError, match="route 'b'"):
        table(a=route("echo", "/x", methods=["GET"]), b=route("echo", "/x", methods=["*"]))
    with pytest.raises(ConfigError, match="variable"):
        table(a=route("echo", "/x/{a}/{a}"))
    with pytest.raises(ConfigError, match="last segment"):
        table(a=route("echo", "/x/{a...}/b"))


def test_a_conflict_in_the_config_refuses_the_start(route_host: Callable[..., RouteHost]) -> None:
    with pytest.raises(OmniError, match=r"route 'one' .* and route 'two'"):
        route_host(routes={"one": route("echo", "/same"), "two": route("echo", "/same")})


def test_a_prefix_that_collides_with_the_console_is_refused(
        route_host: Callable[..., RouteHost]) -> None:
    with pytest.raises(OmniError, match="collides with the console's own /api"):
        route_host(serve={"prefix": "/api/x", "routes": {}})


def test_reload_and_sidecar_routes(route_host: Callable[..., RouteHost]) -> None:
    host = route_host(routes={"one": route("echo", "/one")})
    assert host.client.get("/http/one").status_code == 200
    host.edit(serve={"routes": {"two": route("trap", "/two")}})
    assert host.client.get("/http/one").status_code == 404
    assert host.client.get("/http/two").status_code == 500
    # a conflicting edit keeps what is served
    host.edit(serve={"routes": {"a": route("echo", "/c"), "b": route("echo", "/c")}})
    assert host.client.get("/http/two").status_code == 500
    assert host.client.get("/http/c").status_code == 404
    # the plugin's sidecar maps its own routes; one conflicting with the config's is left out
    sidecar = host.root / "plugins" / "web.yaml"
    sidecar.write_text("routes:\n  side: {handler: echo, path: /side, auth: public}\n")
    eventually(lambda: host.client.get("/http/side").status_code == 200, "the sidecar route")
    sidecar.write_text("routes:\n  side2: {handler: echo, path: /two, auth: public}\n")
    eventually(lambda: host.client.get("/http/side").status_code == 404, "the old one gone")
    assert host.client.get("/http/two").status_code == 500  # the config's route stays
    listed = host.client.get("/api/v1/routes",
                             headers={"Authorization": f"Bearer {host.token()}"}).json()
    assert [r["name"] for r in listed["routes"]] == ["two"]


def test_a_manifest_only_proposes(route_host: Callable[..., RouteHost], tmp_path: Path) -> None:
    manifest = {"name": "web", "routes": [{"name": "hook", "path": "/proposed",
                                           "methods": ["POST"], "handler": "echo",
                                           "auth": "public"}]}
    wasm = wasmbin.set_custom_section(guest_wasm(), "omnicore.manifest",
                                      json.dumps(manifest).encode())
    host = route_host(plugins={"web.wasm": wasm})
    assert host.client.post("/http/proposed", content=b"x").status_code == 404
    admin = {"Authorization": f"Bearer {host.token()}"}
    page = host.client.get("/plugins/web", headers=admin).text
    assert 'data-proposal="hook"' in page and "POST /proposed" in page
    (host.root / "plugins" / "web.yaml").write_text("routes:\n  hook: {proposal: hook}\n")
    eventually(lambda: host.client.post("/http/proposed", content=b"x").status_code == 200,
               "the accepted proposal")
    page = host.client.get("/plugins/web", headers=admin).text
    assert 'data-route="hook"' in page and "POST /http/proposed" in page
