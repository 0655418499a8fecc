"""The console's application as a whole (console/server.py): sign-in in front of every route
but the orchestrator's, the OpenAPI document matching the routes, ids checked in every path."""

from __future__ import annotations

import httpx

from tests.console.conftest import Host, error_of


def test_everything_needs_sign_in_except_orchestrator_endpoints(host: Host) -> None:
    with host.client() as anon:
        for path in ("/api/v1/info", "/api/v1/plugins", "/api/v1/plugins/greeter-rust"):
            r = anon.get(path)
            assert r.status_code == 401
            assert error_of(r)["type"] == "Unauthorized"
        assert anon.post("/api/v1/plugins/greeter-rust/invoke", json={}).status_code == 401
        alive = anon.get("/healthz").json()  # the app folder's id: not a credential
        assert alive == {"status": "alive", "app_id": alive["app_id"]}
        assert anon.get("/readyz").json() == {"ready": True, "reasons": []}
        metrics = anon.get("/metrics")
        assert metrics.status_code == 200 and "omnicore_app_info" in metrics.text
        r = anon.get("/", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"].startswith("/login")
    with host.client("oc_not-a-token") as bad:
        assert bad.get("/api/v1/info").status_code == 401


def test_openapi_documents_every_api_route(host: Host, admin: httpx.Client) -> None:
    """Every /api/v1 route the running app serves (workflows, secrets, vectors and memory
    included) is in the document, and every documented operation is served."""
    import re

    from starlette.routing import Route

    from omnicore.console import create_app

    assert host.module.console is not None
    doc = admin.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    routed = set()
    for route in create_app(host.module.console).routes:
        if not isinstance(route, Route) or not route.path.startswith("/api/v1/"):
            continue
        path = re.sub(r"\{(\w+):\w+\}", r"{\1}", route.path)  # {key:path} -> {key}
        routed |= {(m, path) for m in (route.methods or ()) if m != "HEAD"}
    assert documented == routed
    assert ("POST", "/api/v1/workflow-runs/{run_id}/approve") in routed
    assert ("PUT", "/api/v1/secrets/{name}") in routed
    assert doc["paths"]["/api/v1/openapi.json"]["get"]["security"] == []


def test_ids_spelled_with_other_unicode_digits_are_not_found_not_a_crash(
        host: Host, admin: httpx.Client) -> None:
    # str.isdigit() is true for "³" and "²", which int() refuses: every id in a path was
    # checked with it and then parsed (found by schemathesis: POST /api/v1/tasks/³/retry
    # answered 500). Ids are decimal digits or not found.
    for method, path in (("POST", "/api/v1/tasks/³/retry"), ("POST", "/api/v1/tasks/²/cancel"),
                         ("POST", "/api/v1/jobs/³/retry"), ("POST", "/api/v1/jobs/²/cancel"),
                         ("DELETE", "/api/v1/tokens/³"), ("GET", "/api/v1/workflow-runs/³"),
                         ("POST", "/api/v1/workflow-runs/³/cancel"),
                         ("DELETE", "/api/v1/memory/greeter-rust/³")):
        r = admin.request(method, f"{host.url}{path}")
        assert r.status_code in (400, 404), (method, path, r.status_code, r.text)
    for page in ("/audit?page=³", "/tasks?page=²", "/jobs?page=²"):
        assert admin.get(f"{host.url}{page}").status_code == 200, page
