"""A real host with its console on a free loopback port, a real plugins folder, real users."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from omnicore import OmniApp
from omnicore.console import ConsoleModule

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


def start_host(tmp_path: Path, greeter: Path | None, **console: object) -> Host:
    plugins = tmp_path / "plugins"
    plugins.mkdir(exist_ok=True)
    if greeter is not None:
        shutil.copy(greeter, plugins / "greeter-rust.wasm")
    app = OmniApp("console-test", overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(plugins),
        "console": {"port": 0, **console},
        "capabilities": {"vault": {"password": "hunter2", "region": "eu"}}})
    module = ConsoleModule()
    app.add_module(module)
    app.start()
    assert module.console is not None
    store = module.console.auth.store
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
