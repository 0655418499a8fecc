"""``omnicore mcp --app DIR``: serve an app's plugins to an AI agent as MCP tools over stdio."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from omnicore.cli.app import _config_path
from omnicore.cli.main import main

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
    from omnicore.mcp import serve_stdio
    from omnicore.mcp.tools import check_expose

    cfg = load_config(_config_path(appdir))
    configure("debug" if ctx.obj.get("debug") else cfg.log.level, cfg.log.format,
              stream=sys.stderr, source=cfg.source_of("log.format"))
    app = OmniApp(config=cfg, default_modules=False)
    try:
        app.extensions.load_entry_points()  # third-party capabilities, as `omnicore run` has
        app.plugins.refresh_capabilities()
        operator = app.plugins.operator
        if operator is not None:
            # As `omnicore run` does (plugins.extension.startup), before the folder: the
            # operator's settings (grants, exposed handlers) held in memory and followed, not
            # read from the database on every tool call.
            operator.follow(app.plugins.settings_changed, app.storage.on_settings)
        app.plugins.watch_folder(cfg.plugins_dir, watch=cfg.sandbox.watch,
                                 required=cfg.source_of("plugins_dir") != "default")
        # A typo in mcp.expose is refused before serving (omnicore run does the same).
        check_expose(cfg.mcp.expose, cfg.source_of("mcp.expose"), list(app.plugins))
        asyncio.run(serve_stdio(app))
    finally:
        if app.plugins.operator is not None:
            app.plugins.operator.stop()
        app.close()
