"""``omnicore vectors list|stats PLUGIN``: an operator's view of a plugin's collections."""

from __future__ import annotations

import json
from pathlib import Path

import click

from omnicore.cli.appdata import app_option, load_app_config, open_app_storage
from omnicore.cli.main import main

__all__ = ["vectors"]

_APP = app_option()


def _collections(appdir: Path, plugin: str, load: bool) -> list[dict[str, object]]:
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


@vectors.command("list")
@click.argument("plugin")
@_APP
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def vectors_list(plugin: str, appdir: Path, as_json: bool) -> None:
    """List PLUGIN's collections: name, dimension, metric, vectors."""
    rows = _collections(appdir, plugin, load=False)
    if as_json:
        click.echo(json.dumps(rows))
        return
    for r in rows:
        click.echo(f"{r['name']}\t{r['dim']}\t{r['metric']}\t{r['count']}")


@vectors.command("stats")
@click.argument("plugin")
@_APP
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def vectors_stats(plugin: str, appdir: Path, as_json: bool) -> None:
    """PLUGIN's collections with sizes and index kind (loads, or rebuilds, each index)."""
    rows = _collections(appdir, plugin, load=True)
    if as_json:
        click.echo(json.dumps(rows))
        return
    click.echo(f"{'collection':<24} {'dim':>6} {'metric':<7} {'vectors':>9} {'bytes':>12} index")
    for r in rows:
        click.echo(f"{r['name']!s:<24} {r['dim']!s:>6} {r['metric']!s:<7} {r['count']!s:>9} "
                   f"{r['bytes']!s:>12} {r['index']}")
