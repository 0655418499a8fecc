"""The connector example (plugins/github-issues/js, built by the real JS toolchain) against a
real HTTP server on 127.0.0.1 standing in for GitHub's API: the token from the secrets store
arrives as a bearer credential, the plugin never sees it (not even when the API echoes it
back), and a missing secret, an ungranted connector or bad input fail with a clear reason.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from omnicore.app import OmniApp
from omnicore.errors import GuestError
from omnicore.toolchains import build

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "github-issues-js"
TOKEN = "ghp_test7f3a9c1e5b2d4f60secret"


class FakeGitHub:
    """GitHub's issues endpoints for one repository, recording every request."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.issues: list[dict[str, Any]] = [
            {"number": 1, "title": "Crash on start", "state": "open", "comments": 2,
             "html_url": "https://github.com/ada/demo/issues/1", "labels": [{"name": "bug"}]},
            {"number": 2, "title": "A pull request", "state": "open", "comments": 0,
             "html_url": "https://github.com/ada/demo/pull/2", "labels": [],
             "pull_request": {"url": "..."}},
        ]
        self.echo_auth = False
        github = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a: object) -> None:
                pass

            def reply(self, status: int, obj: Any) -> None:
                data = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def handle_one(self) -> None:
                size = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(size) if size else b""
                github.seen.append({"method": self.command, "path": self.path,
                                    "headers": {k.lower(): v for k, v in self.headers.items()},
                                    "body": body})
                auth = self.headers.get("Authorization", "")
                if github.echo_auth or auth != f"Bearer {TOKEN}":
                    # Like many APIs, its error repeats what it was sent.
                    return self.reply(401, {"message": f"Bad credentials: {auth}"})
                if self.path.startswith("/repos/ada/demo/issues") and self.command == "GET":
                    return self.reply(200, github.issues)
                if self.path == "/repos/ada/demo/issues" and self.command == "POST":
                    made = {"number": 3, "html_url": "https://github.com/ada/demo/issues/3",
                            **json.loads(body)}
                    return self.reply(201, made)
                return self.reply(404, {"message": "Not Found"})

            do_GET = do_POST = handle_one

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(ROOT / "plugins" / "github-issues" / "js", tmp_path_factory.mktemp("gh"))


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    server = FakeGitHub()
    yield server
    server.close()


@pytest.fixture
def gh_app(make_app: Callable[..., OmniApp], wasm: Path, github: FakeGitHub
           ) -> Callable[..., OmniApp]:
    def start(*, secret: bool = True, connectors: list[str] | None = None) -> OmniApp:
        app = make_app("gh", builtin_extensions=None, overrides={
            "sandbox": {"watch": False},
            # As in plugins/demo.yaml, but the API is the local server (a loopback address,
            # so the connector must name it in allow_addresses).
            "connectors": {"github": {"base_url": github.base, "auth": "bearer",
                                      "secret": "github_token",
                                      "allow_addresses": ["127.0.0.1/32"]}}})
        app.start()
        if secret:
            app.secrets.set("github_token", TOKEN)
        app.plugins.load(wasm, config={"repo": "ada/demo"}, grants={
            "config": {}, "http": {"connectors": ["github"] if connectors is None
                                   else connectors}})
        return app

    return start


def test_lists_issues_with_the_token_added_by_the_host(gh_app: Callable[..., OmniApp],
                                                       github: FakeGitHub) -> None:
    app = gh_app()
    issues = app.plugins.call_json(PLUGIN, "issues", {"state": "all", "limit": 5})
    assert issues == [{"number": 1, "title": "Crash on start", "state": "open",
                       "url": "https://github.com/ada/demo/issues/1", "labels": ["bug"],
                       "comments": 2}]
    (req,) = github.seen
    assert req["path"] == "/repos/ada/demo/issues?state=all&per_page=5"
    assert req["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert req["headers"]["accept"] == "application/vnd.github+json"
    assert req["headers"]["user-agent"] == "omnicore-github-issues"


def test_opens_an_issue(gh_app: Callable[..., OmniApp], github: FakeGitHub) -> None:
    app = gh_app()
    made = app.plugins.call_json(PLUGIN, "open", {"title": "Docs typo", "labels": ["docs"]})
    assert made == {"number": 3, "url": "https://github.com/ada/demo/issues/3"}
    assert json.loads(github.seen[-1]["body"]) == {"title": "Docs typo", "labels": ["docs"]}
    assert github.seen[-1]["headers"]["content-type"] == "application/json"


def test_the_token_never_reaches_the_plugin(gh_app: Callable[..., OmniApp],
                                            github: FakeGitHub) -> None:
    app = gh_app()
    github.echo_auth = True  # the API answers with the credential it received
    with pytest.raises(GuestError) as info:
        app.plugins.call_json(PLUGIN, "issues")
    message = info.value.guest_message
    assert message.startswith("Error: GitHub answered 401 to GET /repos/ada/demo/issues"), message
    assert "Bad credentials: Bearer [REDACTED]" in message
    assert github.seen[-1]["headers"]["authorization"] == f"Bearer {TOKEN}"
    logs = "\n".join(str(line) for line in app.plugins.logs(PLUGIN).lines())
    assert TOKEN not in message + logs


def test_a_missing_secret_says_which_and_sends_nothing(gh_app: Callable[..., OmniApp],
                                                       github: FakeGitHub) -> None:
    app = gh_app(secret=False)
    with pytest.raises(GuestError) as info:
        app.plugins.call_json(PLUGIN, "issues")
    assert "UNAVAILABLE" in info.value.guest_message
    assert "github_token" in info.value.guest_message
    assert github.seen == []


def test_an_ungranted_connector_is_denied(gh_app: Callable[..., OmniApp],
                                          github: FakeGitHub) -> None:
    app = gh_app(connectors=[])
    with pytest.raises(GuestError) as info:
        app.plugins.call_json(PLUGIN, "issues")
    assert "DENIED" in info.value.guest_message and github.seen == []


@pytest.mark.parametrize("handler, bad, says", [
    ("issues", {"state": "weird"}, '"state" is open, closed or all'),
    ("issues", {"limit": 1000}, '"limit" is 1-100'),
    ("open", {"body": "no title"}, '{"title"'),
    ("open", {"title": "x", "labels": "bug"}, '"labels" is a list of strings'),
])
def test_bad_input_is_refused_before_any_request(gh_app: Callable[..., OmniApp],
                                                 github: FakeGitHub, handler: str,
                                                 bad: dict[str, Any], says: str) -> None:
    app = gh_app()
    with pytest.raises(GuestError) as info:
        app.plugins.call_json(PLUGIN, handler, bad)
    assert says in info.value.guest_message and github.seen == []
