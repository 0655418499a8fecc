"""``omnicore vectors list|stats PLUGIN``: an operator's view of a plugin's collections."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from omnicore.cli.appdata import app_option, load_app_config, open_app_storage
from omnicore.cli.main import main

__all__ = ["vectors"]

_APP = app_option()


def _collections(appdir: Path, plugin: str, load: bool) -> list[dict[str, Any]]:
    from omnicore.storage.vectors import VectorStore

    cfg = load_app_config(appdir)
    storage = open_app_storage(cfg)
    try:
        store = VectorStore(storage.vectors, cfg.data_dir / "vectors")
        view = store.for_plugin(plugin)
        if load:  # opening checks (and if needed rebuilds) each index, like a search would
            for c in view.collections():
                found = view._collection(c.name)
                if found is not None:
                    store.index(*found)
        return [c.as_dict() for c in view.collections()]
    finally:
        storage.close()


@main.group()
def vectors() -> None:
    """Inspect plugins' vector collections (omnicore:vectors)."""


def _command(name: str, load: bool) -> Callable[[Callable[[list[dict[str, Any]]], None]],
                                                 click.Command]:
    """``vectors NAME PLUGIN [--json]``: PLUGIN's collections (each index opened first if
    ``load``) as JSON, or as the decorated function prints them (its docstring is the help)."""
    def make(table: Callable[[list[dict[str, Any]]], None]) -> click.Command:
        @vectors.command(name, help=table.__doc__)
        @click.argument("plugin")
        @_APP
        @click.option("--json", "as_json", is_flag=True, help="Print JSON.")
        def command(plugin: str, appdir: Path, as_json: bool) -> None:
            rows = _collections(appdir, plugin, load)
            if as_json:
                click.echo(json.dumps(rows))
            else:
                table(rows)

        return command

    return make


@_command("list", load=False)
def vectors_list(rows: list[dict[str, Any]]) -> None:
    """List PLUGIN's collections: name, dimension, metric, vectors."""
    for r in rows:
        click.echo(f"{r['name']}\t{r['dim']}\t{r['metric']}\t{r['count']}")


@_command("stats", load=True)
def vectors_stats(rows: list[dict[str, Any]]) -> None:
    """PLUGIN's collections with sizes and index kind (loads, or rebuilds, each index)."""
    click.echo(f"{'collection':<24} {'dim':>6} {'metric':<7} {'vectors':>9} {'bytes':>12} index")
    for r in rows:
        click.echo(f"{r['name']!s:<24} {r['dim']!s:>6} {r['metric']!s:<7} {r['count']!s:>9} "
                   f"{r['bytes']!s:>12} {r['index']}")
