"""``ConsoleModule``: the console served by Hypercorn on the app's own event loop.

``omnicore run`` adds it when ``console.enabled`` (and not ``--no-console``); an embedding app
adds it with ``app.add_module(ConsoleModule())``. On start it opens the accounts
(``app.storage.users``), prints a one-time setup link when no user was ever created, binds
(the port is known when ``start`` returns), and writes ``<data_dir>/console.json`` — the URL
and a per-process admin token, mode 0600 — for the CLI on this machine (``omnicore call NAME
--app DIR``). It starts before plugins load and answers ``/healthz`` at once (``/readyz``
says when the app is up). On stop it removes that file, ends live streams and stops serving.
Its charts' history is fed by a :class:`~omnicore.console.sampler.ChartSampler` module, which
it adds beside itself and depends on.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from omnicore.accounts.users import UserStore, hasher_for
from omnicore.config.schema import ConsoleConfig
from omnicore.console.auth import Auth
from omnicore.console.guard import HostPolicy
from omnicore.console.sampler import ChartSampler
from omnicore.console.server import create_app
from omnicore.console.state import ConsoleState
from omnicore.core.events import Event
from omnicore.core.module import Module, ModuleHost
from omnicore.errors import ConfigError

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["CONSOLE_FILE", "ConsoleModule", "is_loopback"]

#: The address a wildcard bind is reached at from this machine.
_LOOPBACK_OF = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}

CONSOLE_FILE = "console.json"


def _not_running_on(record: logging.LogRecord) -> bool:
    # Hypercorn's "Running on http://0.0.0.0:8470" names the bind: the "console at" line
    # names the address to open.
    return not str(record.msg).startswith("Running on")


_SERVER_LOG = logging.getLogger("omnicore.console.server")
_SERVER_LOG.addFilter(_not_running_on)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ConsoleModule(Module):
    """The web console and REST API (settings: ``console.*``, or pass ``settings``)."""

    name = "console"
    depends_on = (ChartSampler.name,)

    def __init__(self, settings: ConsoleConfig | None = None) -> None:
        super().__init__()
        self._settings = settings
        self.console: ConsoleState | None = None
        self.url: str | None = None
        self._serving: asyncio.Task[None] | None = None
        self._shutdown = asyncio.Event()
        self._subscription: Any = None

    def on_attach(self, app: ModuleHost) -> None:
        names = {m.name for m in app.modules}
        if ChartSampler.name not in names:
            app.add_module(ChartSampler())

    @property
    def sampler(self) -> ChartSampler:
        """The module sampling the charts' history this console shows."""
        return self.app.get_module(ChartSampler.name, ChartSampler)

    @property
    def app(self) -> OmniApp:
        """The app served: an ``OmniApp``, since the console reads its stores and plugins
        (``Module.app`` is typed by the narrower ``ModuleHost`` seam of the core layer)."""
        return cast("OmniApp", super().app)

    @property
    def settings(self) -> ConsoleConfig:
        return self._settings or self.app.config.console

    async def start(self) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        from omnicore.console import http1

        cfg = self.settings
        if not cfg.auth and not is_loopback(cfg.host):
            raise ConfigError(f"console.auth is false, so the console would let anyone in; it "
                              f"refuses to serve that on {cfg.host} (bind to 127.0.0.1, or "
                              f"turn auth back on)", key="console.auth", value=False,
                              source=self.app.config.source_of("console.auth"))
        app = self.app
        store = UserStore(app.storage.users, hasher=hasher_for(**cfg.password_hash.model_dump()))
        try:
            auth = Auth(store, enabled=cfg.auth, session_ttl_s=cfg.session_ttl_s,
                        secure_cookies=None if cfg.secure_cookies == "auto"
                        else bool(cfg.secure_cookies),
                        trusted_proxies=cfg.trusted_proxies)
        except ValueError as exc:
            raise ConfigError(f"console.trusted_proxies: {exc}", key="console.trusted_proxies",
                              value=cfg.trusted_proxies,
                              source=self.app.config.source_of("console.trusted_proxies")) \
                from None
        state = self.console = ConsoleState(
            app=app, auth=auth, max_upload_bytes=cfg.max_upload_bytes,
            hosts=HostPolicy.of(cfg.host, cfg.allowed_hosts, auth=cfg.auth),
            body_timeout_s=cfg.body_timeout_s, history=self.sampler.series)
        loop = asyncio.get_running_loop()
        state.feed.attach(loop)
        self._subscription = app.events.subscribe("*", self._on_event)
        sock = _bind(cfg.host, cfg.port)
        port = sock.getsockname()[1]
        # Bound to every address, it is opened at the loopback one (a container's published
        # port too): no browser opens http://0.0.0.0:8470/, the first-admin link included.
        shown = _LOOPBACK_OF.get(cfg.host, cfg.host)
        host = f"[{shown}]" if ":" in shown else shown
        self.url = f"http://{host}:{port}"
        config = Config()
        config.accesslog = None
        config.errorlog = _SERVER_LOG
        config.graceful_timeout = 2.0
        config.include_server_header = False
        # Hypercorn closes a keep-alive connection after 1000 requests by default, and a
        # client that already sent the next request on it sees "server disconnected".
        config.keep_alive_max_requests = 1_000_000
        # Hypercorn binds by itself from `bind`; handing it our socket's fd keeps the port we
        # already know (port 0 picks a free one) with no window for another process to take it.
        config.bind = [f"fd://{sock.fileno()}"]
        self._socket = sock
        self._shutdown = asyncio.Event()
        # The app folder's identity (omnicore/appid.py): in the console file and on /healthz,
        # so the CLI given a copy of this folder never reaches this host.
        from omnicore.appid import app_key, ensure_app_id, ensure_app_key

        identity = ensure_app_id(app.data_dir)
        try:
            asgi = create_app(state)
        except BaseException:  # a config it refuses (serve.prefix, serve.routes): free the port
            sock.close()
            raise
        asgi.state.app_id = identity
        # Its secret (0600, never served) proves on /healthz that this host is the folder's:
        # read from the file at each challenge, so hosts sharing a data dir answer alike.
        made = ensure_app_key(app.data_dir, identity)
        data_dir = app.data_dir
        asgi.state.app_key = lambda: app_key(data_dir, identity) or made
        # Hypercorn's protocols as the console needs them: an HTTP/2 stream answered before
        # its body is in ends, the connection stays (omnicore/console/http2.py); trailers over
        # HTTP/1.1 both ways, and a request's on every version (omnicore/console/http1.py).
        http1.install()
        self._serving = asyncio.create_task(
            serve(asgi, config, shutdown_trigger=self._shutdown.wait))  # type: ignore[arg-type]
        _write_private(app.instance_dir / CONSOLE_FILE,
                       json.dumps({"url": self.url, "token": auth.local_token,
                                   "pid": os.getpid(), "runtime_id": app.runtime_id,
                                   "app_id": identity,
                                   "data_dir": os.path.realpath(app.data_dir)}))
        app.data_lock.update(console_url=self.url)
        self.log.info("console at %s", self.url)
        if cfg.auth and store.count() == 0 and store.had_users():
            self.log.warning("no console users left; the setup link is not offered again once "
                             "a first admin was created: add one with `omnicore users add "
                             "NAME --app DIR`")
        elif cfg.auth and store.count() == 0:
            secret = store.new_setup_link()
            self.log.warning("no console users yet: open %s/setup?token=%s within 24 h to "
                             "create the first admin (or run `omnicore users add NAME --app "
                             "DIR`)", self.url, secret)

    def _on_event(self, event: Event) -> None:
        if self.console is not None:
            self.console.feed.on_event(event)

    async def stop(self) -> None:
        app = self.app
        _remove_own(app.instance_dir / CONSOLE_FILE, app.runtime_id)
        if self._subscription is not None:
            app.events.unsubscribe(self._subscription)
        if self.console is not None:
            self.console.feed.detach()
        self._shutdown.set()
        if self._serving is not None:
            await self._serving
        with contextlib.suppress(OSError):
            self._socket.close()  # Hypercorn owns the fd it was handed and closes it
        if self.console is not None:
            self.console.auth.close()


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"the console cannot listen on {host}:{port}: {exc.strerror or exc} "
                          f"(another host running? set console.port, or --no-console)",
                          key="console.port", value=port) from exc
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def _remove_own(path: Path, runtime_id: str) -> None:
    """Remove ``path`` only if this host wrote it: another host's must outlive our stop."""
    try:
        if json.loads(path.read_text()).get("runtime_id") != runtime_id:
            return
    except (OSError, ValueError, AttributeError):
        return
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
