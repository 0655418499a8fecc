"""A real host with its console on a free loopback port, a real plugins folder, real users."""

from __future__ import annotations

import select
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from omnicore import OmniApp
from omnicore.console import ConsoleModule
from tests.hosts import CHEAP_PASSWORD_HASH

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "correct horse battery"


@pytest.fixture(scope="session")
def greeter_wasm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The Rust greeter example, built from source by the real toolchain if not built yet."""
    built = ROOT / "build" / "plugins" / "greeter-rust.wasm"
    if built.is_file():
        return built
    from omnicore.toolchains import build

    return build(ROOT / "plugins" / "greeter" / "rust", tmp_path_factory.mktemp("greeter"))


@dataclass
class Host:
    app: OmniApp
    module: ConsoleModule
    plugins_dir: Path
    admin_token: str
    viewer_token: str
    opened: list[httpx.Client]

    @property
    def url(self) -> str:
        assert self.module.url is not None
        return self.module.url

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        c = httpx.Client(base_url=self.url, headers=headers, timeout=30)
        self.opened.append(c)
        return c

    def browser_session(self, name: str = "admin",
                        password: str = PASSWORD) -> tuple[httpx.Client, str]:
        """An httpx client signed in through the form; and the session's CSRF token."""
        c = self.client()
        c.get("/login")
        r = c.post("/login", data={"name": name, "password": password,
                                   "csrf": c.cookies["omnicore_login_csrf"]})
        assert r.status_code == 303, r.text
        me = c.get("/api/v1/me").json()
        return c, me["csrf"]


def start_host(tmp_path: Path, greeter: Path | None, *, users: bool = True,
               **console: object) -> Host:
    plugins = tmp_path / "plugins"
    plugins.mkdir(parents=True, exist_ok=True)
    if greeter is not None:
        shutil.copy(greeter, plugins / "greeter-rust.wasm")
    app = OmniApp("console-test", overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(plugins),
        "console": {"port": 0, "password_hash": CHEAP_PASSWORD_HASH, **console},
        "capabilities": {"vault": {"password": "hunter2", "region": "eu"}}})
    module = ConsoleModule()
    app.add_module(module)
    app.start()
    assert module.console is not None
    store = module.console.auth.store
    if not users:
        return Host(app, module, plugins, "", "", [])
    store.add("admin", PASSWORD, "admin")
    store.add("viewer", PASSWORD, "viewer")
    admin, _ = store.new_token("admin", "tests")
    viewer, _ = store.new_token("viewer", "tests")
    return Host(app, module, plugins, admin, viewer, [])


@pytest.fixture
def host(tmp_path: Path, greeter_wasm: Path) -> Iterator[Host]:
    h = start_host(tmp_path, greeter_wasm)
    try:
        yield h
    finally:
        for c in h.opened:
            c.close()
        if h.app.state.value == "running":
            h.app.stop()


@pytest.fixture
def admin(host: Host) -> Iterator[httpx.Client]:
    with host.client(host.admin_token) as c:
        yield c


@pytest.fixture
def make_host(tmp_path: Path, greeter_wasm: Path) -> Iterator[Callable[..., Host]]:
    """``make_host(**console)``: a started host with those ``console.*`` settings (stopped
    after the test); ``greeter=False`` for an empty plugins folder, ``users=False`` for none."""
    started: list[Host] = []

    def make(*, greeter: bool = True, users: bool = True, **console: object) -> Host:
        h = start_host(tmp_path / f"host{len(started)}", greeter_wasm if greeter else None,
                       users=users, **console)
        started.append(h)
        return h

    yield make
    for h in started:
        for c in h.opened:
            c.close()
        if h.app.state.value == "running":
            h.app.stop()


@dataclass
class Pushed:
    """What :func:`push` saw: the bytes of body it got onto the wire, the status line (or
    how the connection ended), and how long until then."""

    sent: int
    status: str
    seconds: float


def push(url: str, method: str, path: str, headers: dict[str, str], *, total: int,
         prefix: bytes = b"", chunk: int = 65536, declare: bool = False,
         pause_s: float = 0.0) -> Pushed:
    """Send ``prefix`` and ``total`` more bytes of body over a raw socket, chunked (or with
    ``Content-Length`` when ``declare``), until the server answers, stops reading or closes."""
    host, port = url.split("//")[1].rsplit(":", 1)
    sock = socket.create_connection((host, int(port)))
    sock.settimeout(5)
    head = f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head += f"Content-Length: {len(prefix) + total}\r\n\r\n" if declare else \
        "Transfer-Encoding: chunked\r\n\r\n"
    start = time.monotonic()
    sent = 0
    data = b"x" * chunk
    status = ""
    try:
        sock.sendall(head.encode())
        if prefix:
            sock.sendall(prefix if declare else b"%x\r\n%s\r\n" % (len(prefix), prefix))
        while sent < total and not select.select([sock], [], [], 0)[0]:
            piece = data[:total - sent]
            sock.sendall(piece if declare else b"%x\r\n%s\r\n" % (len(piece), piece))
            sent += len(piece)
            if pause_s:
                time.sleep(pause_s)
    except OSError as exc:  # the server stopped reading (timeout) or closed the connection
        status = type(exc).__name__
    seconds = time.monotonic() - start
    try:
        reply = sock.recv(200)
        status = reply.split(b"\r\n", 1)[0].decode() if reply else status or "closed"
    except OSError as exc:
        status = status or type(exc).__name__
    finally:
        sock.close()
    return Pushed(sent, status, seconds)


def error_of(r: httpx.Response) -> dict[str, object]:
    body = r.json()
    assert set(body) == {"error"}
    err: dict[str, object] = body["error"]
    assert err["status"] == r.status_code and err["type"] and err["message"]
    return err
