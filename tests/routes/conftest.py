"""A real host serving plugin routes: an app folder with ``omnicore.yaml`` (followed live),
real wasm plugins in its ``plugins/``, the console on a free loopback port, a real HTTP
client; and the guest every hostile-input test uses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest

from omnicore import OmniApp
from omnicore.app_reload import ConfigReload
from omnicore.console import ConsoleModule
from tests.compiler import COMPILER
from tests.guest_wat import ALLOC, plugin_wasm
from tests.hosts import CHEAP_PASSWORD_HASH
from tests.waiting import eventually

#: The guest of the hostile cases. ``echo`` answers its input block as the response (the
#: request head is a response head: status 200, the request's headers, its body); ``trap``
#: traps; ``spin`` loops until the plugin's deadline; ``huge`` answers 4 MiB of zeros;
#: ``short`` answers 3 bytes (no block); ``status`` answers the block its body holds (the
#: test writes the response block as the request body); ``fail`` returns an error (E = 1).
GUEST = r"""
(module
  (memory (export "memory") 2)
""" + ALLOC + r"""
  (data (i32.const 16) "the handler refused")
  (func (export "echo") (param $p i32) (param $n i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
            (i64.extend_i32_u (local.get $n))))
  (func (export "status") (param $p i32) (param $n i32) (result i64)
    (local $h i32)
    ;; skip the request head: the body is the response block
    (local.set $h (i32.add (i32.load (local.get $p)) (i32.const 4)))
    (i64.or (i64.shl (i64.extend_i32_u (i32.add (local.get $p) (local.get $h)))
                     (i64.const 32))
            (i64.extend_i32_u (i32.sub (local.get $n) (local.get $h)))))
  (func (export "trap") (param i32 i32) (result i64) unreachable)
  (func (export "spin") (param i32 i32) (result i64) (loop $l (br $l)) (i64.const 0))
  (func (export "fail") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 0x80000013)))
  (func (export "short") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 16) (i64.const 32)) (i64.const 3)))
  (func (export "huge") (param i32 i32) (result i64)
    (drop (memory.grow (i32.const 64)))
    (i64.or (i64.shl (i64.const 0) (i64.const 32)) (i64.const 4194304)))
)
"""


def guest_wasm(name: str = "web") -> bytes:
    return plugin_wasm(name, GUEST)


@dataclass
class RouteHost:
    app: OmniApp
    root: Path
    doc: dict[str, Any]
    reloader: ConfigReload
    client: httpx.Client

    @property
    def url(self) -> str:
        module = self.app.get_module("console", ConsoleModule)
        assert module.url is not None
        return module.url

    def burst(self, path: str, n: int = 20) -> list[int]:
        """The statuses of ``n`` concurrent GETs of ``path`` (a route's concurrency cap)."""
        async def gets() -> list[int]:
            async with httpx.AsyncClient(base_url=self.url, timeout=30) as c:
                return [r.status_code for r in await asyncio.gather(
                    *(c.get(path) for _ in range(n)))]

        return asyncio.run(gets())

    def edit(self, **changes: Any) -> None:
        """Rewrite ``omnicore.yaml`` with ``changes`` and wait until the host applied it."""
        seen = self.reloader.reloads
        self.doc.update(changes)
        (self.root / "omnicore.yaml").write_text(json.dumps(self.doc))
        eventually(lambda: self.reloader.reloads > seen, "the config reload")

    def token(self, role: Literal["admin", "viewer"] = "admin") -> str:
        module = self.app.get_module("console", ConsoleModule)
        assert module.console is not None
        store = module.console.auth.store
        name = f"{role}-user"
        if store.get(name) is None:
            store.add(name, "correct horse battery", role)
        return store.new_token(name, "routes test")[0]


@pytest.fixture
def route_host(tmp_path: Path, module_cache: Path) -> Iterator[Callable[..., RouteHost]]:
    """``route_host(plugins={file: bytes}, sidecars={file: text}, routes={...}, **config)``:
    a started host; every one stopped after the test."""
    started: list[RouteHost] = []

    def start(*, plugins: dict[str, bytes] | None = None,
              sidecars: dict[str, str] | None = None, routes: dict[str, Any] | None = None,
              **config: Any) -> RouteHost:
        root = tmp_path / f"app{len(started)}"
        (root / "plugins").mkdir(parents=True)
        for file, wasm in (plugins or {"web.wasm": guest_wasm()}).items():
            (root / "plugins" / file).write_bytes(wasm)
        for file, text in (sidecars or {}).items():
            (root / "plugins" / file).write_text(text)
        doc: dict[str, Any] = {
            "name": "routes-test", "data_dir": "data", "plugins_dir": "plugins",
            "sandbox": {"cache_dir": str(module_cache), "compiler": COMPILER},
            "console": {"port": 0, "password_hash": CHEAP_PASSWORD_HASH},
            "serve": {"routes": routes or {}}, **config}
        (root / "omnicore.yaml").write_text(json.dumps(doc))
        app = OmniApp(config_path=root / "omnicore.yaml", environ={}, entry_points=False)
        reloader = ConfigReload(root / "omnicore.yaml")
        app.add_module(ConsoleModule())
        app.add_module(reloader)
        app.start()
        module = app.get_module("console", ConsoleModule)
        host = RouteHost(app, root, doc, reloader,
                         httpx.Client(base_url=str(module.url), timeout=30))
        started.append(host)
        eventually(lambda: all(p.state == "loaded" for p in app.plugins)
                   and len(app.plugins) >= len(plugins or {"web.wasm": b""}),
                   "the plugins to load")
        return host

    yield start
    for host in started:
        host.client.close()
        if host.app.state.value == "running":
            host.app.stop()
