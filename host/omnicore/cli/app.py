"""App commands: ``omnicore new APPDIR``, ``run``, ``config show``, ``info``."""

from __future__ import annotations

import gc
import json
import os
import platform
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from omnicore import __version__
from omnicore.cli.main import CONFIG_FILE, main, new
from omnicore.core import heap
from omnicore.errors import ConfigError

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["config", "info", "new_app", "run"]


def _config_path(appdir: Path) -> Path:
    path = appdir / CONFIG_FILE if appdir.is_dir() or not appdir.suffix else appdir
    if not path.is_file():
        raise ConfigError(f"no {CONFIG_FILE} in {appdir}; create an app with "
                          f"`omnicore new {appdir}`", source=str(path))
    return path


@new.command("app")
@click.argument("appdir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--name", help="App name (default: the folder's name).")
def new_app(appdir: Path, name: str | None) -> None:
    """Scaffold an app in APPDIR: omnicore.yaml, plugins/, README."""
    from omnicore.scaffolds import scaffold_app

    files = scaffold_app(appdir, name)
    click.echo(f"created {appdir}/ ({len(files)} files)")
    click.echo(f"next: cd {appdir} && omnicore run")


@main.command()
@click.argument("appdir", default=".", envvar="OMNICORE_APPDIR", type=click.Path(path_type=Path))
@click.option("--no-console", is_flag=True,
              help="Do not serve the web console and REST API (console.enabled: false).")
@click.pass_context
def run(ctx: click.Context, appdir: Path, no_console: bool) -> None:
    """Run the app in APPDIR (default: $OMNICORE_APPDIR or here) until SIGINT/SIGTERM.

    Logs the runtime id at start and serves the web console (console.host:console.port,
    127.0.0.1:8470 by default); on SIGINT/SIGTERM, running tasks get shutdown_grace_s to
    finish, modules stop in reverse order, and the exit code is 0. An mcp.expose pattern
    that exposes none of the loaded plugins' handlers (a typo) stops it, exit code 1.
    """
    # First, before the imports and the start (seconds on a busy machine): a SIGINT or
    # SIGTERM that comes meanwhile is held, not fatal (exit 143), and the app's own handlers
    # take it once they are in place (BlockingDriver.run unblocks), so it stops cleanly.
    held = _hold_stop_signals()
    try:
        _run(ctx, appdir, no_console)
    finally:
        _release(held)


def _hold_stop_signals() -> set[int | signal.Signals] | None:
    """Block SIGINT and SIGTERM in this thread; the mask it had (None: not the main thread,
    where no handler of ours would ever take them)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})


def _release(held: set[int | signal.Signals] | None) -> None:
    if held is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _run(ctx: click.Context, appdir: Path, no_console: bool) -> None:
    from omnicore.app import OmniApp
    from omnicore.config import load_config
    from omnicore.logging import configure

    path = _config_path(appdir)
    cfg = load_config(path)
    debug = ctx.obj.get("debug", False)
    configure("debug" if debug else cfg.log.level,
              cfg.log.format, source=cfg.source_of("log.format"))
    app = OmniApp(config=cfg)
    from omnicore.app_reload import ConfigReload

    app.add_module(ConfigReload(path))  # an edit of omnicore.yaml applies to the running host
    if cfg.console.enabled and not no_console:
        from omnicore.console import ConsoleModule

        app.add_module(ConsoleModule())
    app.log.info("omnicore %s: app %s, runtime id %s, data %s", __version__, app.name,
                 app.runtime_id, app.data_dir)
    refused = _refuse_expose_typos(app)
    # This process is the host's alone: what it keeps for its life is frozen out of full
    # collections once its plugins have loaded (core/heap.py).
    heap.manage()
    app.run()
    if refused:
        raise refused[0]
    # The process ends here, with everything closed. Without this, the interpreter's last
    # collections walk every object the app imported (about a second on a busy machine),
    # which a stop bounded by shutdown_grace_s cannot afford; the OS frees it all anyway.
    gc.freeze()


def _refuse_expose_typos(app: OmniApp) -> list[ConfigError]:
    """Once the plugins are loaded (the app is running), check omnicore.yaml's mcp.expose as
    ``omnicore mcp`` does: a typo stops the app, and the list returned then holds why."""
    from omnicore.core.events import AppStarted
    from omnicore.mcp.tools import check_expose

    refused: list[ConfigError] = []

    def check(_event: AppStarted) -> None:
        cfg = app.config
        try:
            check_expose(cfg.mcp.expose, cfg.source_of("mcp.expose"), list(app.plugins))
        except ConfigError as exc:
            refused.append(exc)
            app.log.error("%s; stopping", exc)
            app.request_stop()

    app.events.subscribe(AppStarted, check)
    return refused


@main.group()
def config() -> None:
    """Inspect configuration."""


@config.command("show")
@click.argument("appdir", default=".", envvar="OMNICORE_APPDIR", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print JSON: {key: {value, source}}.")
@click.option("--show-secrets", is_flag=True, help="Do not mask secret values.")
def config_show(appdir: Path, as_json: bool, show_secrets: bool) -> None:
    """Print the effective config of APPDIR with the source of each value."""
    from omnicore.config import load_config, render_config

    path = appdir / CONFIG_FILE if appdir.is_dir() else appdir
    if not path.is_file():
        click.echo(f"note: no {path}; showing defaults and environment only", err=True)
    cfg = load_config(path if path.is_file() else None)
    rows = render_config(cfg, mask=not show_secrets)
    if as_json:
        click.echo(json.dumps({k: {"value": v, "source": s} for k, v, s in rows}, indent=2))
        return
    width = max(len(k) for k, _, _ in rows)
    vwidth = min(40, max(len(v) for _, v, _ in rows))
    for key, value, source in rows:
        click.echo(f"{key:<{width}}  {value:<{vwidth}}  # {source}")


def _version(dist: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def info(as_json: bool) -> None:
    """Print this host's identity, environment and versions."""
    from omnicore.adapters import detect
    from omnicore.core.identity import hostname, new_runtime_id

    env = detect()
    doc = {
        "omnicore": __version__,
        "runtime_id": new_runtime_id(),
        "hostname": hostname(),
        "pid": os.getpid(),
        "environment": env.kind,
        "environment_reasons": list(env.reasons),
        "provider": env.provider,
        "cpus": env.cpus,
        "defaults": env.defaults,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "executable": sys.executable,
        "wasmtime": _version("wasmtime"),
        "pluggy": _version("pluggy"),
        "pydantic": _version("pydantic"),
    }
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"omnicore {__version__}  (runtime id {doc['runtime_id']}, for this process)")
    click.echo(f"host        {doc['hostname']} pid {doc['pid']}")
    click.echo(f"environment {env.describe()}")
    d = env.defaults
    click.echo(f"defaults    log {d['log']['format']}, "
               f"workers {d['workers']}, data {d['data_dir']}")
    click.echo(f"python      {doc['python']} ({doc['executable']})")
    click.echo(f"platform    {doc['platform']}")
    click.echo(f"engine      wasmtime {doc['wasmtime']}, pluggy {doc['pluggy']}, "
               f"pydantic {doc['pydantic']}")
