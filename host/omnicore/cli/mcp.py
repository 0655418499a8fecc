"""``omnicore mcp --app DIR``: serve an app's plugins to an AI agent as MCP tools over stdio."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from omnicore.cli.app import _config_path
from omnicore.cli.main import main

__all__ = ["mcp"]


def _refuse_typos(cfg: Any, infos: list[Any]) -> None:
    """An ``mcp.expose`` pattern of omnicore.yaml that exposes nothing of the app's plugins
    is a typo an agent would only meet as a missing tool: refused before serving."""
    from omnicore.errors import ConfigError
    from omnicore.mcp.tools import unmatched_patterns

    problems = unmatched_patterns(cfg.mcp.expose, infos)
    if problems:
        where = cfg.source_of("mcp.expose")
        raise ConfigError(f"mcp.expose ({where}): {problems[0]}"
                          + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                          key="mcp.expose", source=where)


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

    cfg = load_config(_config_path(appdir))
    configure("debug" if ctx.obj.get("debug") else cfg.log.level, cfg.log.format,
              stream=sys.stderr, source=cfg.source_of("log.format"))
    app = OmniApp(config=cfg, default_modules=False)
    try:
        app.extensions.load_entry_points()  # third-party capabilities, as `omnicore run` has
        app.plugins.refresh_capabilities()
        app.plugins.watch_folder(cfg.plugins_dir, watch=cfg.sandbox.watch,
                                 required=cfg.source_of("plugins_dir") != "default")
        _refuse_typos(cfg, list(app.plugins))
        asyncio.run(serve_stdio(app))
    finally:
        app.close()
