"""Where registry credentials go (issue 61, item 6; specs/registry.md §3 "Credentials"), as
docker and containerd send them: to the registry's token service only over https, or over
plain http to a host reached so anyway (``registry.plain_http``, loopback); a token service's
redirect with credentials only within its origin; a registry's redirect (a blob store
elsewhere) never with the Authorization header of another origin, and never down from https
to http. Small loopback servers that record what they were sent, and the real registry."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from omnicore import oci
from omnicore.oci import Options
from omnicore.oci.artifact import build
from omnicore.oci.client import RegistryClient, _origin
from omnicore.oci.reference import Reference
from tests.host_fixtures import echo_wasm
from tests.registryserver import PASSWORD, USER, Registry

#: (method, path, headers) -> (status, headers, body)
Answer = Callable[[str, str, dict[str, str]], tuple[int, dict[str, str], bytes]]


class Recorder:
    """A loopback HTTP server answering with ``answer`` and keeping every request it got."""

    def __init__(self, answer: Answer) -> None:
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        rec = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                rec.seen.append((self.command, self.path, headers))
                status, out, body = answer(self.command, self.path, headers)
                self.send_response(status)
                for key, value in out.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = _any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers() -> Iterator[Callable[[Answer], Recorder]]:
    made: list[Recorder] = []

    def make(answer: Answer) -> Recorder:
        made.append(Recorder(answer))
        return made[-1]

    yield make
    for server in made:
        server.stop()


CREDS = oci.Credentials(USER, PASSWORD, source="--password-stdin")


def bearer(realm: str) -> Answer:
    def answer(method: str, path: str, headers: dict[str, str]
               ) -> tuple[int, dict[str, str], bytes]:
        return 401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="reg"'}, b""
    return answer


def test_credentials_never_go_to_a_plain_http_token_service_elsewhere(
        servers: Callable[[Answer], Recorder]) -> None:
    registry = servers(bearer("http://auth.registry.example/token"))
    ref = f"oci://127.0.0.1:{registry.port}/team/x:1"
    with pytest.raises(oci.RegistryAuthError, match=r"auth\.registry\.example/token, plain "
                                                    r"HTTP: the credentials from "
                                                    r"--password-stdin are not sent"):
        oci.pull(ref, options=Options(credentials=CREDS))
    # Named in registry.plain_http, the operator said so: it is asked (and cannot be reached).
    with pytest.raises(oci.RegistryError) as reached:
        oci.pull(ref, options=Options(credentials=CREDS, timeout_s=2, deadline_s=4,
                                      plain_http=frozenset({"auth.registry.example"})))
    assert "plain HTTP" not in str(reached.value)


def test_a_token_service_redirect_to_another_origin_gets_no_credentials(
        servers: Callable[[Answer], Recorder]) -> None:
    elsewhere = servers(lambda m, p, h: (200, {}, json.dumps({"token": "t"}).encode()))
    auth = servers(lambda m, p, h: (307, {"Location": f"{elsewhere.url}/steal"}, b""))
    registry = servers(bearer(f"{auth.url}/token"))
    ref = f"oci://127.0.0.1:{registry.port}/team/x:1"
    with pytest.raises(oci.RegistryAuthError, match="redirects to another origin, where the "
                                                    "credentials would go"):
        oci.pull(ref, options=Options(credentials=CREDS))
    assert auth.seen and auth.seen[0][2]["authorization"] == CREDS.basic()  # the realm: yes
    assert elsewhere.seen == []  # the other origin: nothing
    # An identity token travels in a POST body: the same rule.
    token = oci.Credentials(identity_token="refresh-me", source="config.json")
    with pytest.raises(oci.RegistryAuthError, match="another origin"):
        oci.pull(ref, options=Options(credentials=token))
    assert elsewhere.seen == []


def test_a_blob_redirect_to_another_origin_carries_no_authorization(
        servers: Callable[[Answer], Recorder]) -> None:
    module = echo_wasm("moved", "1.0.0")
    artifact = build(module, name="moved")
    store = servers(lambda m, p, h: (200, {}, module))
    basic = f"Basic {CREDS.basic().split(' ', 1)[1]}"

    def registry_answer(method: str, path: str, headers: dict[str, str]
                        ) -> tuple[int, dict[str, str], bytes]:
        if headers.get("authorization") != basic:
            return 401, {"WWW-Authenticate": 'Basic realm="reg"'}, b""
        if "/manifests/" in path:
            return 200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json",
                         "Docker-Content-Digest": artifact.digest}, artifact.manifest
        if artifact.module_digest in path:
            return 307, {"Location": f"{store.url}/blob?sig=1"}, b""
        return 200, {}, artifact.config
    registry = servers(registry_answer)
    pulled = oci.pull(f"oci://127.0.0.1:{registry.port}/team/moved:1",
                      options=Options(credentials=CREDS))
    assert pulled.module == module
    assert store.seen and all("authorization" not in h for _, _, h in store.seen)


def test_the_same_host_over_http_is_another_origin() -> None:
    assert _origin("https://reg.example/v2/") == ("https", "reg.example", 443)
    assert _origin("http://reg.example/v2/") != _origin("https://reg.example/v2/")
    assert _origin("https://REG.example:443/a") == _origin("https://reg.example/b")
    client = RegistryClient(Reference.parse("oci://reg.example/x:1"),
                            Options(plain_http=frozenset({"mirror.local:5000"})))
    try:
        assert client.base.startswith("https://")
        assert client.plain_allowed("http://mirror.local:5000/t")
        assert not client.plain_allowed("http://mirror.local:6000/t")
        assert client.plain_allowed("http://127.0.0.1:9/t")  # loopback, no CA
        assert not client.plain_allowed("http://reg.example/t")
    finally:
        client.close()


def test_the_test_registrys_own_token_service_still_works(tmp_path: Any,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    # Its realm is plain http on loopback (another port): a host reached so anyway.
    server = Registry.start(bearer=True)
    try:
        module = echo_wasm("tok", "1.0.0")
        ref = server.ref("team/tok:1")
        monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "none"))
        oci.push(module, ref, options=Options(credentials=CREDS))
        assert oci.pull(ref, options=Options(credentials=CREDS)).module == module
        assert server.token is not None and server.token.requests >= 2
    finally:
        server.stop()
