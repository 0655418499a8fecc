"""``omnicore settings``: the operator's settings of plugins, from the command line.

The same settings the console changes (grants, config, limits, enabled), written to the app's
database (``storage.url``, else ``<data_dir>/omnicore.db``), whether or not ``omnicore run``
serves the app: every running host of that database applies a change within about a second
(omnicore.plugins.operator). Input is checked as the console checks it before anything is
written: the capability must exist and its options pass its check, limits must be known keys,
and config must pass the plugin's schema when its file is in this app's folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from omnicore.cli.appdata import app_option, app_storage, load_app_config
from omnicore.cli.main import main
from omnicore.errors import ConfigError, PluginNotFound

__all__ = ["settings"]

_APP = app_option("The app folder (its omnicore.yaml names the database).")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the settings as JSON.")


@contextmanager
def _operator(appdir: Path) -> Iterator[Any]:
    from omnicore.plugins.operator import OperatorSettings

    with app_storage(appdir) as store:
        yield OperatorSettings(lambda: store.plugin_settings)


def _change(appdir: Path, plugin: str, edit: Callable[[dict[str, Any]], dict[str, Any]],
            as_json: bool) -> None:
    from omnicore.accounts.audit import Actor, record_settings
    from omnicore.plugins.operator import OperatorSettings

    with app_storage(appdir) as store:
        before, after = OperatorSettings(lambda: store.plugin_settings).change(
            plugin, edit, by="cli")
        record_settings(store, Actor.cli(), plugin, before, after)  # the audit log
    _print(plugin, after, as_json)
    click.echo("omnicore: stored; every running host of this database applies it within "
               "about a second", err=True)


def _print(plugin: str, doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    if not doc:
        click.echo(f"{plugin}: no operator settings (its sidecar and the app config apply)")
    for key in sorted(doc):
        click.echo(f"{key:<8} {json.dumps(doc[key], sort_keys=True)}")


def _registry(appdir: Path) -> Any:
    """The capabilities a host of this app has: the built-ins and installed extensions'."""
    from omnicore.app import OmniApp
    from omnicore.sandbox.capability import CapabilityRegistry

    app = OmniApp(config=load_app_config(appdir), default_modules=False)
    try:
        app.extensions.load_entry_points()
        return CapabilityRegistry(app.extensions.capabilities())
    finally:
        app.close()


def _schema_check(appdir: Path, plugin: str, config: dict[str, Any]) -> None:
    """Check ``config`` (over the app config's) against the plugin's schema, when this app's
    folder holds the plugin (another host's folder may hold it instead: then it is checked
    there, and a config it refuses leaves that host's plugin serving as before)."""
    from omnicore.cli.plugins import _manifest_name
    from omnicore.plugins.folder import resolve_plugin_file
    from omnicore.plugins.settings import deep_merge
    from omnicore.sandbox import configschema
    from omnicore.sandbox.wasmbin import custom_sections

    cfg = load_app_config(appdir)
    try:
        wasm = resolve_plugin_file(Path(cfg.plugins_dir), plugin, _manifest_name)
    except PluginNotFound:
        return
    sections = custom_sections(wasm.read_bytes(), "omnicore.manifest")
    schema = json.loads(sections[0]).get("config") if sections else None
    app_layer = cfg.plugins.get(plugin)
    if isinstance(schema, dict):
        configschema.validate(deep_merge(app_layer.config if app_layer else {}, config),
                              schema, plugin)


@main.group()
def settings() -> None:
    """The operator's settings of plugins (grants, config, limits), for every host."""


@settings.command("show")
@click.argument("plugin")
@_APP
@_JSON
def show(plugin: str, appdir: Path, as_json: bool) -> None:
    """Print PLUGIN's operator settings (those the console and this command made)."""
    with _operator(appdir) as operator:
        _print(plugin, operator.doc(plugin), as_json)


@settings.command("grant")
@click.argument("plugin")
@click.argument("capability")
@click.option("--options", metavar="JSON", default="{}", show_default=True,
              help="The grant's options, e.g. '{\"allow_hosts\": [\"api.example.com\"]}'.")
@_APP
@_JSON
def grant(plugin: str, capability: str, options: str, appdir: Path, as_json: bool) -> None:
    """Grant CAPABILITY (e.g. kv, http) to PLUGIN on every host."""
    from omnicore.plugins.operator import with_grants
    from omnicore.sandbox import grants as grant_rules

    try:
        opts = json.loads(options)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--options") from None
    layer = grant_rules.normalize({capability: opts}, source="--options")
    grant_rules.validate(grant_rules.merge(layer), _registry(appdir), plugin)
    _change(appdir, plugin, lambda doc: with_grants(doc, layer=layer), as_json)


@settings.command("revoke")
@click.argument("plugin")
@click.argument("capability")
@_APP
@_JSON
def revoke(plugin: str, capability: str, appdir: Path, as_json: bool) -> None:
    """Revoke CAPABILITY from PLUGIN on every host (over its sidecar and the app config)."""
    from omnicore.plugins.operator import with_grants
    from omnicore.sandbox import grants as grant_rules

    layer = grant_rules.normalize({capability: False}, source="revoke")
    registry = _registry(appdir)
    if capability.removeprefix("omnicore:") not in registry:
        raise ConfigError(f"no capability '{capability}' on this app's hosts (they have "
                          f"{', '.join(registry.names())})", key="capability")
    _change(appdir, plugin, lambda doc: with_grants(doc, layer=layer), as_json)


@settings.command("config")
@click.argument("plugin")
@click.argument("items", nargs=-1, required=True, metavar="KEY=VALUE...")
@_APP
@_JSON
def config(plugin: str, items: tuple[str, ...], appdir: Path, as_json: bool) -> None:
    """Set PLUGIN's config to KEY=VALUE... on every host (JSON values decoded, dotted keys
    nest; it replaces the config the console or this command set before)."""
    from omnicore.cli.plugins import parse_config

    new = parse_config(items)
    _schema_check(appdir, plugin, new)
    _change(appdir, plugin, lambda doc: {**doc, "config": new}, as_json)


@settings.command("limits")
@click.argument("plugin")
@click.argument("items", nargs=-1, required=True, metavar="KEY=VALUE...")
@_APP
@_JSON
def limits(plugin: str, items: tuple[str, ...], appdir: Path, as_json: bool) -> None:
    """Set PLUGIN's limits (e.g. timeout_ms=250) on every host, over those set before."""
    from omnicore.cli.plugins import parse_config
    from omnicore.sandbox.limits import Limits

    given = parse_config(items)
    Limits().merged(given)  # an unknown key or a bad value is named before anything is written
    _change(appdir, plugin, lambda doc: {**doc, "limits": {**doc.get("limits", {}), **given}},
            as_json)


@settings.command("enable")
@click.argument("plugin")
@_APP
@_JSON
def enable(plugin: str, appdir: Path, as_json: bool) -> None:
    """Serve PLUGIN on every host (over a sidecar's ``enabled: false``)."""
    _change(appdir, plugin, lambda doc: {**doc, "enabled": True}, as_json)


@settings.command("disable")
@click.argument("plugin")
@_APP
@_JSON
def disable(plugin: str, appdir: Path, as_json: bool) -> None:
    """Stop serving PLUGIN on every host (it stays loaded as ``disabled``)."""
    _change(appdir, plugin, lambda doc: {**doc, "enabled": False}, as_json)


@settings.command("clear")
@click.argument("plugin")
@click.argument("key", required=False,
                type=click.Choice(["grants", "config", "limits", "enabled", "mcp"]))
@_APP
@_JSON
def clear(plugin: str, key: str | None, appdir: Path, as_json: bool) -> None:
    """Drop PLUGIN's operator settings (or only KEY): its sidecar and app config apply."""
    _change(appdir, plugin,
            lambda doc: {} if key is None else {k: v for k, v in doc.items() if k != key},
            as_json)
