"""The Go and Rust SDK route helpers through a real host (specs/http-routes.md §8): the
example plugins of examples/http-routes, built by the real toolchains, mapped by the
operator (a sidecar's routes, a manifest proposal accepted), answering a real HTTP client:
a GitHub-signed webhook (and a wrongly signed one refused), a Stripe-signed one, a JSON API
behind an API token. What docs/guides/http-routes.md walks through."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from omnicore.routes import sign_github, sign_stripe
from tests.routes.conftest import RouteHost
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "http-routes"
SECRET = b"webhook secret"

pytestmark = pytest.mark.toolchain


@pytest.fixture(scope="session")
def hooks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    from omnicore.toolchains import build, go, rust

    out = tmp_path_factory.mktemp("hooks")
    built = {}
    for lang, toolchain in (("go", go), ("rust", rust)):
        problem = toolchain.check()
        if problem:
            pytest.skip(f"the {lang} toolchain: {problem}")
        built[f"hooks-{lang}.wasm"] = build(EXAMPLES / lang, out).read_bytes()
    return built


GO_SIDECAR = """\
grants: [kv]
routes:
  github:                    # accepts the manifest's proposal, adds the secret's name
    proposal: github
    secret: github_webhook_secret
  notes:
    handler: notes
    path: /notes/{id}
    methods: [GET, PUT, DELETE]
    auth: token
    max_body_bytes: 4096
"""


def test_go_and_rust_route_handlers(route_host: Callable[..., RouteHost],
                                    hooks: dict[str, bytes]) -> None:
    host = route_host(plugins=hooks, sidecars={"hooks-go.yaml": GO_SIDECAR}, routes={
        "hello": {"plugin": "hooks-rust", "handler": "hello", "path": "/hello/{name}",
                  "auth": "public"},
        "stripe": {"plugin": "hooks-rust", "handler": "on_event", "path": "/hooks/stripe",
                   "methods": ["POST"], "auth": "stripe", "secret": "stripe_secret"}})
    host.app.secrets.set("github_webhook_secret", SECRET)
    host.app.secrets.set("stripe_secret", SECRET)
    c = host.client

    r = c.get("/http/hello/Ada", params={"greeting": "Hej"})
    assert r.status_code == 200 and r.json() == {"message": "Hej, Ada!"}
    assert r.headers["cache-control"] == "no-store"

    body = json.dumps({"ref": "refs/heads/main", "commits": [{}, {}]}).encode()
    signed = {"X-Hub-Signature-256": sign_github(SECRET, body), "X-GitHub-Event": "push"}
    eventually(lambda: c.post("/http/hooks/github", content=body,
                              headers=signed).status_code != 404, "the sidecar's routes")
    r = c.post("/http/hooks/github", content=body, headers=signed)
    assert r.status_code == 200, r.text
    assert r.json() == {"event": "push", "ref": "refs/heads/main", "commits": 2}
    wrong = {**signed, "X-Hub-Signature-256": sign_github(b"guess", body)}
    assert c.post("/http/hooks/github", content=body, headers=wrong).status_code == 401

    event = b'{"type": "invoice.paid"}'
    r = c.post("/http/hooks/stripe", content=event,
               headers={"Stripe-Signature": sign_stripe(SECRET, event)})
    assert r.status_code == 200 and r.json() == {"received": "invoice.paid"}

    auth = {"Authorization": f"Bearer {host.token('viewer')}"}
    assert c.get("/http/notes/1").status_code == 401
    assert c.get("/http/notes/1", headers=auth).status_code == 404
    r = c.put("/http/notes/1", json={"text": "buy milk"}, headers=auth)
    assert r.status_code == 200 and r.json() == {"id": "1", "text": "buy milk",
                                                 "by": "viewer-user"}
    assert c.get("/http/notes/1", headers=auth).json() == {"text": "buy milk"}
    assert c.put("/http/notes/1", content=b"x" * 5000, headers=auth).status_code == 413
    assert c.delete("/http/notes/1", headers=auth).status_code == 204
    assert c.get("/http/notes/1", headers=auth).status_code == 404


def test_curl_gets_the_answer(route_host: Callable[..., RouteHost],
                              hooks: dict[str, bytes]) -> None:
    """The guide's curl line, run as it is written."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("no curl")
    host = route_host(plugins={"hooks-rust.wasm": hooks["hooks-rust.wasm"]}, routes={
        "hello": {"plugin": "hooks-rust", "handler": "hello", "path": "/hello/{name}",
                  "auth": "public"}})
    out = subprocess.run([curl, "-s", "-i", f"{host.url}/http/hello/Ada?greeting=Hej"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    assert out.startswith("HTTP/1.1 200")
    assert out.rstrip().endswith('{"message":"Hej, Ada!"}')
