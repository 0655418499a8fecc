"""``omnicore mcp --app DIR``: serve an app's plugins to an AI agent as MCP tools over stdio."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from omnicore.cli.app import _config_path
from omnicore.cli.main import main
from omnicore.errors import ConfigError

if TYPE_CHECKING:
    from omnicore.app import OmniApp
    from omnicore.config import OmniConfig

__all__ = ["mcp"]


@main.command()
@click.option("--app", "appdir", default=".", envvar="OMNICORE_APPDIR", show_default=True,
              type=click.Path(path_type=Path), help="The app whose plugins are served.")
@click.pass_context
def mcp(ctx: click.Context, appdir: Path) -> None:
    """Serve the app's exposed plugin handlers as MCP tools over stdin/stdout.

    A desktop agent spawns this command. Only handlers the operator exposed are tools
    (mcp.expose in omnicore.yaml, or in a plugin's sidecar); each is named PLUGIN.HANDLER and
    runs with the plugin's grants, limits and deadline. stdout carries JSON-RPC only; logs go
    to stderr. A running host serves the same tools at /mcp on its console.
    """
    import asyncio

    from omnicore.app import OmniApp
    from omnicore.config import load_config
    from omnicore.logging import configure

    cfg = load_config(_config_path(appdir))
    configure("debug" if ctx.obj.get("debug") else cfg.log.level, cfg.log.format,
              stream=sys.stderr, source=cfg.source_of("log.format"))
    app = OmniApp(config=cfg, default_modules=False)
    refused: list[ConfigError] = []
    try:
        app.extensions.load_entry_points()  # third-party capabilities, as `omnicore run` has
        app.plugins.refresh_capabilities()
        operator = app.plugins.operator
        if operator is not None:
            # As `omnicore run` does (plugins.extension.startup), before the folder: the
            # operator's settings (grants, exposed handlers) held in memory and followed, not
            # read from the database on every tool call.
            operator.follow(app.plugins.settings_changed, app.storage.on_settings)
        asyncio.run(_serve(app, cfg, refused))
        if not refused and app.plugins.wait_loaded(app.plugins.load_wait_s):
            # (The client may have closed before the start's load ended, and its check ran:
            # a typo is an error all the same.)
            _check(app, cfg, refused)
    finally:
        if app.plugins.operator is not None:
            app.plugins.operator.stop()
        app.close()
    if refused:
        raise refused[0]


def _check(app: OmniApp, cfg: OmniConfig, refused: list[ConfigError]) -> bool:
    """A typo in mcp.expose (omnicore run refuses it the same way): False, and why kept in
    ``refused``."""
    from omnicore.mcp.tools import check_expose

    try:
        check_expose(cfg.mcp.expose, cfg.source_of("mcp.expose"), list(app.plugins))
    except ConfigError as exc:
        refused.append(exc)
        return False
    return True


async def _serve(app: OmniApp, cfg: OmniConfig, refused: list[ConfigError]) -> None:
    """Serve at once, while the folder loads on a thread of its own: an agent's handshake is
    answered within its timeout however long the plugins take to compile, its tool list
    waits for them (omnicore.mcp.server), and a call waits for its plugin. A typo in
    mcp.expose, judged once they are loaded, ends the serving: the command fails with it."""
    import asyncio

    from omnicore.mcp import serve_stdio

    loop = asyncio.get_running_loop()
    serving = asyncio.current_task()
    assert serving is not None

    def loaded(_folder: object) -> None:
        if not _check(app, cfg, refused):
            try:
                loop.call_soon_threadsafe(serving.cancel)
            except RuntimeError:  # the serving is over already: the command fails with it
                pass

    app.plugins.watch_folder(cfg.plugins_dir, watch=cfg.sandbox.watch, background=True,
                             required=cfg.source_of("plugins_dir") != "default", loaded=loaded)
    try:
        await serve_stdio(app)
    except asyncio.CancelledError:
        if not refused:
            raise
