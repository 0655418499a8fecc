"""``omnicore settings``: the operator's settings of plugins, from the command line.

The same settings the console changes (grants, config, limits, enabled), kept in the app's
database (``storage.url``, else ``<data_dir>/omnicore.db``). One door: when ``omnicore run``
serves the app, the command asks that host through its REST API (the same requests, checks
and audit entries as a script's; it applies the change at once, every other host of the
database within about a second) and imports no host code. Only with no host running, or for
a plugin that host does not have (settings wait for a plugin by name), does it write the
database itself (omnicore.plugins.operator), checking input as the console does before
anything is written: the capability must exist and its options pass its check, limits must
be known keys, and config must pass the plugin's schema when its file is in this app's folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from omnicore.cli.appdata import app_option, app_storage, load_app_config
from omnicore.cli.main import main
from omnicore.errors import ConfigError, PluginNotFound

if TYPE_CHECKING:
    from omnicore.cli.remote import Remote

__all__ = ["settings"]

#: The answers of a running host that send the change to the database instead: it does not
#: have the plugin (another host's folder may), or has it from outside its folder.
_NOT_HERE = ("PluginNotFound", "NotFromFolder")

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


def _running(appdir: Path) -> Remote | None:
    from omnicore.cli.remote import running_host

    return running_host(appdir)[1]


def _path(plugin: str, tail: str = "") -> str:
    from urllib.parse import quote

    return f"/api/v1/plugins/{quote(plugin, safe='')}{tail}"


def _ask(remote: Remote | None, plugin: str, method: str, tail: str, body: Any = None,
         as_json: bool = False) -> bool:
    """Make the change on the running host and print the settings it leaves; False when
    there is no host to ask, or it does not serve ``plugin`` (the caller writes the
    database)."""
    from omnicore.cli.remote import RemoteError

    if remote is None:
        return False
    try:
        doc = remote.request(method, _path(plugin, tail), body)
        if method != "DELETE" or not tail.startswith("/settings"):
            doc = remote.request("GET", _path(plugin, "/settings"))
    except RemoteError as exc:
        if exc.type in _NOT_HERE:
            return False
        raise
    _print(plugin, doc, as_json)
    click.echo(f"omnicore: applied by the running host at {remote.url}; every other host of "
               "its database applies it within about a second", err=True)
    return True


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


def _folder_options(appdir: Path, plugin: str, capability: str) -> dict[str, Any]:
    """The options this app's omnicore.yaml and the plugin's sidecar (when its folder holds
    the plugin) grant ``capability`` with; ``{}`` when they do not grant it."""
    from omnicore.cli.plugins import _manifest_name
    from omnicore.errors import PluginNotFound
    from omnicore.plugins.folder import resolve_plugin_file
    from omnicore.plugins.operator import folder_grant

    cfg = load_app_config(appdir)
    try:
        wasm: Path | None = resolve_plugin_file(Path(cfg.plugins_dir), plugin, _manifest_name)
    except PluginNotFound:
        wasm = None
    settings = cfg.plugins.get(plugin)
    found = folder_grant(settings.grants if settings is not None else None, wasm, capability)
    return {} if found is None else found


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


def _plugin_command(name: str, *more: Callable[[Any], Any],
                    help: str | None = None) -> Callable[[Any], click.Command]:
    """A ``settings`` command on one plugin: PLUGIN, then ``more`` parameters, then the app
    and --json options (every command here takes them alike)."""

    def command(f: Any) -> click.Command:
        for param in reversed((click.argument("plugin"), *more, _APP, _JSON)):
            f = param(f)
        return settings.command(name, help=help)(f)

    return command


_ITEMS = click.argument("items", nargs=-1, required=True, metavar="KEY=VALUE...")


@_plugin_command("show")
def show(plugin: str, appdir: Path, as_json: bool) -> None:
    """Print PLUGIN's operator settings (those the console and this command made)."""
    remote = _running(appdir)
    if remote is not None:
        _print(plugin, remote.request("GET", _path(plugin, "/settings")), as_json)
        return
    with _operator(appdir) as operator:
        _print(plugin, operator.doc(plugin), as_json)


@_plugin_command("grant", click.argument("capability"), click.option(
    "--options", metavar="JSON", default=None,
    help="The grant's options, e.g. '{\"allow_hosts\": [\"api.example.com\"]}' (default: "
         "those omnicore.yaml and the plugin's sidecar grant it with, else {})."))
def grant(plugin: str, capability: str, options: str | None, appdir: Path,
          as_json: bool) -> None:
    """Grant CAPABILITY (e.g. kv, http) to PLUGIN on every host.

    Without --options it takes the options omnicore.yaml and the plugin's sidecar grant it
    with, so granting back what a revoke took restores it as it was.
    """
    try:
        opts = None if options is None else json.loads(options)
    except ValueError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--options") from None
    cap = capability.removeprefix("omnicore:")
    body = {} if opts is None else {"options": opts}
    if _ask(_running(appdir), plugin, "PUT", f"/grants/{cap}", body, as_json):
        return
    from omnicore.plugins.operator import with_grants
    from omnicore.sandbox import grants as grant_rules

    if opts is None:
        opts = _folder_options(appdir, plugin, cap)
    layer = grant_rules.normalize({capability: opts}, source="--options")
    grant_rules.validate(grant_rules.merge(layer), _registry(appdir), plugin)
    _change(appdir, plugin, lambda doc: with_grants(doc, layer=layer), as_json)


@_plugin_command("revoke", click.argument("capability"))
def revoke(plugin: str, capability: str, appdir: Path, as_json: bool) -> None:
    """Revoke CAPABILITY from PLUGIN on every host (over its sidecar and the app config)."""
    cap = capability.removeprefix("omnicore:")
    if _ask(_running(appdir), plugin, "DELETE", f"/grants/{cap}", as_json=as_json):
        return
    from omnicore.plugins.operator import with_grants
    from omnicore.sandbox import grants as grant_rules

    layer = grant_rules.normalize({capability: False}, source="revoke")
    registry = _registry(appdir)
    if capability.removeprefix("omnicore:") not in registry:
        raise ConfigError(f"no capability '{capability}' on this app's hosts (they have "
                          f"{', '.join(registry.names())})", key="capability")
    _change(appdir, plugin, lambda doc: with_grants(doc, layer=layer), as_json)


@_plugin_command("config", _ITEMS)
def config(plugin: str, items: tuple[str, ...], appdir: Path, as_json: bool) -> None:
    """Set PLUGIN's config to KEY=VALUE... on every host (JSON values decoded, dotted keys
    nest; it replaces the config the console or this command set before)."""
    from omnicore.cli.plugins import parse_config

    new = parse_config(items)
    if _ask(_running(appdir), plugin, "PUT", "/config", {"config": new}, as_json):
        return
    _schema_check(appdir, plugin, new)
    _change(appdir, plugin, lambda doc: {**doc, "config": new}, as_json)


@_plugin_command("limits", _ITEMS)
def limits(plugin: str, items: tuple[str, ...], appdir: Path, as_json: bool) -> None:
    """Set PLUGIN's limits (e.g. timeout_ms=250) on every host, over those set before."""
    from omnicore.cli.plugins import parse_config

    given = parse_config(items)
    remote = _running(appdir)
    if remote is not None:
        # The REST API replaces the limits whole; this command adds to those set before.
        from omnicore.cli.remote import RemoteError

        try:
            before = remote.request("GET", _path(plugin, "/settings")).get("limits") or {}
        except RemoteError:
            before = {}
        if _ask(remote, plugin, "PUT", "/limits", {"limits": {**before, **given}}, as_json):
            return
    from omnicore.sandbox.limits import Limits

    Limits().merged(given)  # an unknown key or a bad value is named before anything is written
    _change(appdir, plugin, lambda doc: {**doc, "limits": {**doc.get("limits", {}), **given}},
            as_json)


def _enabled_command(name: str, enabled: bool, help: str) -> None:
    # enable and disable: one command each, alike but for the value they set.
    @_plugin_command(name, help=help)
    def command(plugin: str, appdir: Path, as_json: bool) -> None:
        if _ask(_running(appdir), plugin, "PUT", "/enabled", {"enabled": enabled}, as_json):
            return
        _change(appdir, plugin, lambda doc: {**doc, "enabled": enabled}, as_json)


_enabled_command("enable", True,
                 "Serve PLUGIN on every host (over a sidecar's ``enabled: false``).")
_enabled_command("disable", False,
                 "Stop serving PLUGIN on every host (it stays loaded as ``disabled``).")


@_plugin_command("clear", click.argument(
    "key", required=False, type=click.Choice(["grants", "config", "limits", "enabled", "mcp"])))
def clear(plugin: str, key: str | None, appdir: Path, as_json: bool) -> None:
    """Drop PLUGIN's operator settings (or only KEY): its sidecar and app config apply."""
    if _ask(_running(appdir), plugin, "DELETE", "/settings" + (f"?key={key}" if key else ""),
            as_json=as_json):
        return
    _change(appdir, plugin,
            lambda doc: {} if key is None else {k: v for k, v in doc.items() if k != key},
            as_json)
