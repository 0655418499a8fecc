"""A hostile registry, token service or blob store (issue 61, item 6; specs/registry.md §3):
cases beside tests/oci/test_registry_credentials.py. Redirect loops and chains bounded, an
endless or dripping blob bounded by size and time, a compressed blob not inflated past its
cap, a manifest answered for another digest refused, a non-http redirect refused, and
credentials not sent over plain http to a loopback token service an https registry names.
Small loopback servers of our own and the real registry (tests/registryserver.py)."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from omnicore import oci
from omnicore.oci import Options
from omnicore.oci.artifact import build
from omnicore.oci.auth import parse_challenge
from omnicore.oci.client import RegistryClient, sha256_digest
from omnicore.oci.reference import Reference
from tests.host_fixtures import echo_wasm
from tests.oci.test_registry_credentials import CREDS, Answer, Recorder, servers
from tests.registryserver import Registry

__all__ = ["servers"]  # the fixture, shared with test_registry_credentials

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Streamer:
    """A loopback server whose every GET answers 200 and then ``body(write)`` writes what it
    likes (no Content-Length: read to the end or the cap)."""

    def __init__(self, body: Callable[[Callable[[bytes], Any]], None],
                 headers: dict[str, str] | None = None) -> None:
        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    body(self.wfile.write)
                except OSError:
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def streamers() -> Iterator[Callable[..., Streamer]]:
    made: list[Streamer] = []

    def make(body: Callable[[Callable[[bytes], Any]], None],
             headers: dict[str, str] | None = None) -> Streamer:
        made.append(Streamer(body, headers))
        return made[-1]

    yield make
    for server in made:
        server.stop()


def client(port: int, **options: Any) -> RegistryClient:
    return RegistryClient(Reference.parse(f"oci://127.0.0.1:{port}/team/x:1"),
                          Options(**options))


DIGEST = "sha256:" + "ab" * 32


def test_a_redirect_loop_between_two_servers_is_refused(
        servers: Callable[[Answer], Recorder]) -> None:
    ports: dict[str, int] = {}
    a = servers(lambda m, p, h: (307, {"Location": f"http://127.0.0.1:{ports['b']}/v2/x"}, b""))
    b = servers(lambda m, p, h: (308, {"Location": f"http://127.0.0.1:{ports['a']}"
                                                   f"/v2/team/x/blobs/{DIGEST}"}, b""))
    ports.update(a=a.port, b=b.port)
    with client(a.port) as c, pytest.raises(oci.RegistryError, match="in a loop"):
        c.get_blob(DIGEST, 10)
    assert len(a.seen) + len(b.seen) <= 3


def test_an_endless_chain_of_fresh_redirects_is_bounded(
        servers: Callable[[Answer], Recorder]) -> None:
    counter = iter(range(10_000))
    hop = servers(lambda m, p, h: (302, {"Location": f"/hop/{next(counter)}"}, b""))
    with client(hop.port) as c, pytest.raises(oci.RegistryError, match="more than 5 redirects"):
        c.get_blob(DIGEST, 10)
    assert len(hop.seen) == 6


def test_a_redirect_to_a_non_http_scheme_is_an_error_not_a_read(
        servers: Callable[[Answer], Recorder]) -> None:
    bad = servers(lambda m, p, h: (307, {"Location": "file:///etc/passwd"}, b""))
    with client(bad.port) as c, pytest.raises(oci.RegistryError):
        c.get_blob(DIGEST, 10)


def test_an_endless_blob_is_cut_at_the_cap(streamers: Callable[..., Streamer]) -> None:
    def forever(write: Callable[[bytes], Any]) -> None:
        chunk = b"\0" * 65536
        for _ in range(100_000):  # 6.5 GB: never reached
            write(chunk)
    server = streamers(forever)
    started = time.monotonic()
    with client(server.port, max_blob_bytes=2 << 20) as c, \
            pytest.raises(oci.ArtifactRefused, match="runs past 2097152 bytes"):
        c.get_blob(DIGEST, None)
    assert time.monotonic() - started < 20


def test_a_dripping_blob_is_cut_at_the_deadline(streamers: Callable[..., Streamer]) -> None:
    def drip(write: Callable[[bytes], Any]) -> None:
        for _ in range(600):
            write(b"x")
            time.sleep(0.05)
    server = streamers(drip)
    started = time.monotonic()
    with client(server.port, timeout_s=1.0, deadline_s=1.5) as c, \
            pytest.raises(oci.RegistryError, match=r"too slow|did not answer"):
        c.get_blob(DIGEST, None)
    assert time.monotonic() - started < 6


def test_a_compressed_blob_is_not_inflated_past_its_cap(
        streamers: Callable[..., Streamer]) -> None:
    # 256 MiB of zeros in ~250 KiB of gzip, announced as Content-Encoding: gzip (never asked
    # for). Inflated, one read would hold far more than the 1 MiB cap allows.
    bomb = gzip.compress(b"\0" * (256 << 20), compresslevel=9)
    server = streamers(lambda write: write(bomb), {"Content-Encoding": "gzip"})
    import tracemalloc

    tracemalloc.start()
    try:
        with client(server.port, max_blob_bytes=1 << 20) as c, \
                pytest.raises(oci.ArtifactRefused):
            c.get_blob(DIGEST, None)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, f"{peak} bytes held for a blob capped at 1 MiB"


def test_a_manifest_answered_for_another_digest_is_refused(
        servers: Callable[[Answer], Recorder]) -> None:
    real = build(echo_wasm("m", "1.0.0"), name="m")
    other = build(echo_wasm("m", "2.0.0"), name="m")
    # Asked by digest for 1.0.0's manifest, it answers 2.0.0's with 1.0.0's digest header.
    lying = servers(lambda m, p, h: (200, {"Content-Type": MANIFEST,
                                           "Docker-Content-Digest": real.digest},
                                     other.manifest))
    with client(lying.port) as c, pytest.raises(oci.ArtifactRefused, match=r"not the .* asked"):
        c.get_manifest(real.digest, (MANIFEST,))
    with pytest.raises(oci.ArtifactRefused):
        oci.pull(f"oci://127.0.0.1:{lying.port}/team/m@{real.digest}")


def test_an_https_registry_cannot_send_credentials_to_a_plain_loopback_token_service(
        servers: Callable[[Answer], Recorder]) -> None:
    # A registry reached over https (its name not loopback, not in plain_http) names a token
    # realm on this machine's loopback, another port, plain http: any local user may listen
    # there. The credentials are for that registry; over plain http they go only to a host
    # the client reaches so anyway, and this registry is not one.
    local = servers(lambda m, p, h: (200, {}, b'{"token": "t"}'))
    remote = RegistryClient(Reference.parse("oci://registry.example/team/x:1"),
                            Options(credentials=CREDS))
    challenge = parse_challenge(f'Bearer realm="{local.url}/token",service="reg"')
    assert challenge is not None
    try:
        with pytest.raises(oci.RegistryAuthError, match="plain HTTP"):
            remote._token(challenge, "repository:team/x:pull", CREDS)
    finally:
        remote.close()
    assert local.seen == []
    # A loopback registry (reached over plain http itself) may use one: the test registry's
    # token service (test_registry_credentials) is that case.
    here = client(local.port, credentials=CREDS)
    try:
        assert here._token(challenge, "repository:team/x:pull", CREDS) == "t"
    finally:
        here.close()


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    server = Registry.start()
    try:
        yield server
    finally:
        server.stop()


def test_a_retagged_artifact_keeps_its_signatures_link(registry: Registry) -> None:
    # Re-tagging the same manifest (a push of the same module and sidecar) keeps its digest;
    # pushing another module under the tag moves it, and a pull by the old digest still gets
    # the old bytes, checked against that digest.
    ref = registry.ref("attack/retag:1")
    one, two = echo_wasm("retag", "1.0.0"), echo_wasm("retag", "2.0.0")
    first = oci.push(one, ref)
    again = oci.push(one, ref)
    assert first.digest == again.digest
    oci.push(two, ref)
    assert oci.pull(ref).module == two
    assert oci.pull(registry.ref(f"attack/retag@{first.digest}")).module == one


class TlsRecorder(Recorder):
    """A :class:`Recorder` over TLS with a certificate of the test CA (127.0.0.1)."""

    def __init__(self, answer: Answer, folder: Path) -> None:
        import ssl

        from tests.registryserver import make_ca

        super().__init__(answer)
        self.server.shutdown()  # serve again over TLS, same port
        folder.mkdir(parents=True, exist_ok=True)
        ca, cert, key = (folder / "ca.pem", folder / "server.pem", folder / "server.key")
        if not ca.is_file():  # one CA per folder: servers sharing a folder share it
            ca, cert, key = make_ca(folder)
        self.ca = ca
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


def test_an_https_registry_redirect_down_to_plain_http_is_refused(
        servers: Callable[[Answer], Recorder], tmp_path: Path) -> None:
    plain = servers(lambda m, p, h: (200, {}, b"x" * 10))
    def moved(code: int) -> Answer:
        return lambda m, p, h: (code, {"Location": f"{plain.url}/blob"}, b"")
    for code in (301, 302, 303, 307, 308):
        tls = TlsRecorder(moved(code), tmp_path / str(code))
        try:
            remote = RegistryClient(Reference.parse(f"oci://127.0.0.1:{tls.port}/team/x:1"),
                                    Options(ca_file=tls.ca, credentials=CREDS))
            with remote, pytest.raises(oci.RegistryError, match="from https to plain http"):
                remote.get_blob(DIGEST, 10)
            assert tls.seen, "the TLS registry was asked"
        finally:
            tls.stop()
    assert plain.seen == []


def test_an_https_registry_redirect_to_another_tls_origin_carries_no_authorization(
        tmp_path: Path) -> None:
    module = echo_wasm("elsewhere", "1.0.0")
    store = TlsRecorder(lambda m, p, h: (200, {}, module), tmp_path / "tls")
    basic = CREDS.basic()

    def answer(method: str, path: str, headers: dict[str, str]
               ) -> tuple[int, dict[str, str], bytes]:
        if headers.get("authorization") != basic:
            return 401, {"WWW-Authenticate": 'Basic realm="reg"'}, b""
        return 308, {"Location": f"https://localhost:{store.port}/blob"}, b""
    registry = TlsRecorder(answer, tmp_path / "tls")
    both = registry.ca  # one CA signed both servers' certificate
    try:
        remote = RegistryClient(Reference.parse(f"oci://127.0.0.1:{registry.port}/team/x:1"),
                                Options(ca_file=both, credentials=CREDS))
        with remote:
            assert remote.get_blob(sha256_digest(module), len(module)) == module
    finally:
        registry.stop()
        store.stop()
    assert store.seen and all("authorization" not in h for _, _, h in store.seen)
    assert any(h.get("authorization") == basic for _, _, h in registry.seen)


def test_an_endless_token_answer_is_cut_and_a_second_challenge_not_answered(
        servers: Callable[[Answer], Recorder], streamers: Callable[..., Streamer]) -> None:
    def forever(write: Callable[[bytes], Any]) -> None:
        write(b'{"token": "')
        for _ in range(100_000):
            write(b"t" * 65536)
    endless = streamers(forever)
    registry = servers(lambda m, p, h: (401, {"WWW-Authenticate": f'Bearer realm="http://'
                                                                  f'127.0.0.1:{endless.port}'
                                                                  '/token"'}, b""))
    with client(registry.port) as c, pytest.raises(oci.RegistryError, match="runs past"):
        c.get_blob(DIGEST, 10)
    # A token service that answers, and a registry that challenges again and again: one
    # token asked for, then the refusal (no loop).
    tokens = servers(lambda m, p, h: (200, {}, b'{"token": "t"}'))
    again = servers(lambda m, p, h: (401, {"WWW-Authenticate": f'Bearer realm="{tokens.url}'
                                                               '/token"'}, b""))
    with client(again.port) as c, pytest.raises(oci.RegistryAuthError):
        c.get_blob(DIGEST, 10)
    assert len(tokens.seen) == 1 and len(again.seen) == 2


def test_a_token_service_redirecting_for_ever_is_bounded(
        servers: Callable[[Answer], Recorder]) -> None:
    counter = iter(range(10_000))
    auth = servers(lambda m, p, h: (302, {"Location": f"/token/{next(counter)}"}, b""))
    registry = servers(lambda m, p, h: (401, {"WWW-Authenticate": f'Bearer realm="{auth.url}'
                                                                  '/token"'}, b""))
    with client(registry.port) as c, pytest.raises(oci.RegistryAuthError,
                                                   match="more than 5 times"):
        c.get_blob(DIGEST, 10)
    assert len(auth.seen) == 6
