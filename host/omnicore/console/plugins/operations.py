"""What the console does to plugins, on top of the public ``app.plugins`` API.

Uploads land in this instance's plugins folder as ``.wasm`` files, or, when the app's hosts
share a store (``catalog.uploads``: ``auto`` with ``storage.url`` set, or ``catalog``), are
published to the plugin catalog so every host serves them; config / limits / enabled
are the operator's settings in the app's database (``app.plugins.operator``), and grants go
through ``app.plugins.grant(..., persist=True)`` (the grants module's one home), so every
instance of the database applies them and a restart keeps them. Each change is validated
before anything is written and made live at once; if the plugin still refuses the new
settings, the old ones are put back, so nothing is left half-changed. Each change that took
is recorded in the audit log with who made it (``by``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnicore.accounts.audit import Actor, record, record_settings
from omnicore.console.errors import ApiError
from omnicore.errors import PluginNotFound
from omnicore.plugins.info import PluginInfo
from omnicore.plugins.settings import deep_merge
from omnicore.plugins.sidecar import sidecar_paths
from omnicore.sandbox import configschema
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.module import PluginModule

if TYPE_CHECKING:
    from omnicore.app import OmniApp
    from omnicore.plugins.operator import OperatorSettings

__all__ = ["clear_settings", "delete_plugin", "operator_settings", "plugin_file", "reload_plugin",
           "set_settings", "upload_plugin"]

#: A plugin file name: a plain name, no folders, no dot-file (the folder ignores those).
FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}\.wasm$")
WASM_MAGIC = b"\0asm"


def _folder(app: OmniApp) -> Path:
    folder = app.plugins.folder
    if folder is None:
        raise ApiError(409, "this host does not follow a plugins folder, so uploads have "
                            "nowhere to go (set plugins_dir)", type="NoPluginsFolder")
    return folder.path


def _sync(app: OmniApp) -> None:
    folder = app.plugins.folder
    if folder is not None:
        folder.sync()


def plugin_file(app: OmniApp, name: str) -> Path:
    """The ``.wasm`` of plugin ``name``, which must live in the plugins folder."""
    info = app.plugins.get(name)  # PluginNotFound -> 404
    if info.source is None:
        raise ApiError(409, f"plugin '{name}' was loaded from bytes, not from a file; it has "
                            "no file or sidecar to change", type="NotFromFolder", plugin=name)
    path = Path(info.source)
    folder = app.plugins.folder
    if folder is None or path.resolve().parent != folder.path.resolve():
        raise ApiError(409, f"plugin '{name}' was loaded from {path}, outside the plugins "
                            "folder; the console only changes files it manages",
                       type="NotFromFolder", plugin=name)
    return path


def upload_plugin(app: OmniApp, filename: str, data: bytes, *, max_bytes: int, by: Actor,
                  replace: bool = False) -> PluginInfo:
    """Validate ``data`` as a plugin, then write it into the plugins folder and load it."""
    filename = filename or ""
    if not FILE_NAME.match(filename) or filename != os.path.basename(filename):
        raise ApiError(422, f"file name {filename[:120]!r} is not allowed: use letters, "
                            "digits, '_', '.', '-' and end in .wasm (no folders)",
                       type="BadFileName")
    if len(data) > max_bytes:
        raise ApiError(413, f"{filename} is {len(data)} bytes; uploads are limited to "
                            f"{max_bytes} (console.max_upload_bytes)")
    if not data.startswith(WASM_MAGIC):
        raise ApiError(422, f"{filename} is not a WebAssembly module (it does not start with "
                            "\\0asm)", type="InvalidModule")
    report = PluginModule.inspect(data, None)
    if not report.get("ok"):
        raise ApiError(422, f"{filename}: {report.get('error')}",
                       type=str(report.get("error_type") or "InvalidModule"))
    name = str(report.get("name") or filename.removesuffix(".wasm"))
    if uploads_to_catalog(app):
        return _publish_upload(app, name, data, by)
    folder = _folder(app)
    target = folder / filename
    if target.exists() and not replace:
        raise ApiError(409, f"{filename} exists in the plugins folder; pass replace=true to "
                            "overwrite it", type="Exists")
    if name in app.plugins:
        holder = app.plugins.get(name).source
        if holder is None or Path(holder).resolve() != target.resolve():
            raise ApiError(409, f"a plugin named '{name}' is loaded already (from "
                                f"{holder or 'bytes'}); unload it or rename the upload",
                           type="DuplicatePlugin", plugin=name)
    folder.mkdir(parents=True, exist_ok=True)
    previous = app.plugins.get(name).sha256 if name in app.plugins else None
    _atomic_write(target, data)
    _sync(app)
    try:
        info = app.plugins.get(name)
    except PluginNotFound:
        info = None
    if info is None or info.state == "failed":
        reason = info.last_error if info is not None else "it did not register"
        if not replace:
            target.unlink(missing_ok=True)
            _sync(app)
        raise ApiError(422, f"{filename} did not load: {reason}", type="PluginLoadError",
                       plugin=name)
    record(app.storage, by, "plugin.upload", name,
           {"sha256": previous} if previous else None,
           {"file": filename, "sha256": info.sha256, "size": info.size})
    return info


def uploads_to_catalog(app: OmniApp) -> bool:
    """Whether an upload is published to the plugin catalog (``catalog.uploads``) rather
    than written into this host's folder."""
    cfg = app.config
    mode = cfg.catalog.uploads
    return mode == "catalog" or (mode == "auto" and cfg.storage.url is not None
                                 and cfg.catalog.follow)


#: How long an upload published to the catalog waits for this host to serve it.
UPLOAD_WAIT_S = 30.0


def _publish_upload(app: OmniApp, name: str, data: bytes, by: Actor) -> PluginInfo:
    """Publish an upload to the catalog (every host of the store serves it), then answer with
    this host's plugin once it took the version (calls in flight finish on the old one)."""
    import time

    from omnicore.console.catalog import publish

    follower = app.plugins.published.follower
    if follower is None:
        raise ApiError(409, "catalog.uploads is 'catalog' but this host does not follow the "
                            "catalog (catalog.follow: false), so it would never serve the "
                            "upload; set catalog.follow, or catalog.uploads: folder",
                       type="NotFollowingCatalog", plugin=name)
    version, _ = publish(app, name, data, None, None, by)
    hexdigest = version.digest.removeprefix("sha256:")
    until = time.monotonic() + UPLOAD_WAIT_S
    while True:
        held = app.plugins.published.wanted(name)
        info = app.plugins.get(name) if name in app.plugins else None
        if info is not None and info.state != "compiling":
            if info.sha256 == hexdigest and info.origin == "catalog":
                return info
            if held is not None and held.digest == version.digest and info.last_error \
                    and f"version {version.number} " in info.last_error:
                raise ApiError(422, f"{name} v{version.number} was published to the catalog "
                                    f"but does not serve here: {info.last_error}",
                               type="PluginLoadError", plugin=name)
        if time.monotonic() > until:
            raise ApiError(503, f"published {name} v{version.number} ({version.digest[:19]}) "
                                "to the catalog, but this host did not take it within "
                                f"{UPLOAD_WAIT_S:.0f} s (see /api/v1/instances)",
                           type="Timeout", plugin=name)
        time.sleep(0.02)


def delete_plugin(app: OmniApp, name: str, by: Actor) -> None:
    """Remove plugin ``name``: its file and sidecar from the folder, its operator settings
    (as deleting its sidecar always did: a later plugin of that name starts with none), then
    the plugin from the host. A plugin the catalog serves is not the folder's to delete:
    the refusal names the command that takes it out of the catalog."""
    info = app.plugins.get(name)  # PluginNotFound -> 404
    if info.origin == "catalog":
        raise ApiError(409, f"plugin '{name}' comes from the plugin catalog, which every host "
                            "of the store follows: deleting it here would not stop them; take "
                            f"it out of the catalog with `omnicore plugins remove {name}` (or "
                            f"DELETE /api/v1/catalog/{name}), and each host falls back to its "
                            "folder's file of that name, if any", type="FromCatalog",
                       plugin=name)
    path = plugin_file(app, name)
    sha256 = info.sha256
    for extra in sidecar_paths(path):
        extra.unlink(missing_ok=True)
    path.unlink(missing_ok=True)
    _sync(app)
    operator = app.plugins.operator
    if operator is not None and operator.doc(name):
        operator.change(name, lambda _doc: {}, by=by.name)
    if name in app.plugins:  # the folder did not own it (or raced): make sure it is gone
        app.plugins.unload(name, reason="deleted in the console")
    record(app.storage, by, "plugin.delete", name, {"file": path.name, "sha256": sha256})


def reload_plugin(app: OmniApp, name: str, by: Actor) -> PluginInfo:
    path = plugin_file(app, name)
    app.plugins.reload_file(name, path)
    info = app.plugins.get(name)
    record(app.storage, by, "plugin.reload", name, None, {"sha256": info.sha256})
    return info


def set_settings(app: OmniApp, name: str, by: Actor, *,
                 config: Mapping[str, Any] | None = None,
                 limits: Mapping[str, Any] | None = None,
                 enabled: bool | None = None) -> PluginInfo:
    """Replace the operator's ``config`` / ``limits`` / ``enabled`` of plugin ``name`` (kept
    in the app's database: every instance applies them over its own folder)."""
    plugin_file(app, name)
    info = app.plugins.get(name)
    operator = app.plugins.operator
    if operator is None:
        raise ApiError(409, "this host keeps no operator settings (it has no database)",
                       type="NoDatabase", plugin=name)
    if config is not None:
        if not isinstance(config, Mapping):
            raise ApiError(422, "config must be a JSON object", type="ConfigError")
        schema = info.manifest.get("config")
        app_layer = app.config.plugins.get(name)
        effective = deep_merge(app_layer.config if app_layer else {}, config)
        if isinstance(schema, Mapping):
            configschema.validate(effective, schema, name)  # ConfigError -> 422
    if limits is not None:
        if not isinstance(limits, Mapping):
            raise ApiError(422, "limits must be a JSON object", type="ConfigError")
        Limits().merged(dict(limits))  # ConfigError names the bad key
    if enabled is not None and not isinstance(enabled, bool):
        raise ApiError(422, "enabled must be true or false", type="ConfigError")
    new = {key: dict(value) if isinstance(value, Mapping) else value
           for key, value in (("config", config), ("limits", limits), ("enabled", enabled))
           if value is not None}
    before, _after = operator.change(name, lambda doc: {**doc, **new}, by=by.name)
    app.plugins.settings_changed(name)
    after = app.plugins.get(name)
    if after.stale or after.state == "failed":
        why = after.last_error or "the plugin refused them"
        operator.change(name, lambda _doc: before, by=by.name)
        app.plugins.settings_changed(name)
        raise ApiError(422, f"plugin '{name}' did not accept the new settings: {why}",
                       type="ConfigError", plugin=name)
    if config is not None:
        record(app.storage, by, "config.set", name, before.get("config"), dict(config))
    if limits is not None:
        record(app.storage, by, "limits.set", name, before.get("limits"), dict(limits))
    if enabled is not None:
        record(app.storage, by, "plugin.enable" if enabled else "plugin.disable", name,
               before.get("enabled") is not False, enabled)
    return after


def operator_settings(app: OmniApp, name: str) -> dict[str, Any]:
    """The operator's settings of plugin ``name`` (``{}`` when it has none; the plugin need
    not be loaded: they wait for it by name)."""
    return _operator(app, name).doc(name)


#: The keys of the operator's settings of a plugin that :func:`clear_settings` drops.
SETTINGS_KEYS = ("grants", "config", "limits", "enabled", "mcp")


def clear_settings(app: OmniApp, name: str, by: Actor, key: str | None = None
                   ) -> dict[str, Any]:
    """Drop the operator's settings of plugin ``name`` (or only ``key``): its sidecar and the
    app config apply again. Applied here at once, by every other instance within a second;
    each change recorded in the audit log. The settings as they are now."""
    if key is not None and key not in SETTINGS_KEYS:
        raise ApiError(422, f"no operator setting {key[:40]!r} (they are "
                            f"{', '.join(SETTINGS_KEYS)})", type="ConfigError")
    operator = _operator(app, name)
    before, after = operator.change(
        name, lambda doc: {} if key is None else {k: v for k, v in doc.items() if k != key},
        by=by.name)
    decided = before.get("grants") if key in (None, "grants") else None
    app.plugins.settings_changed(name, frozenset(decided) if isinstance(decided, Mapping)
                                 else frozenset())
    record_settings(app.storage, by, name, before, after)
    return after


def _operator(app: OmniApp, name: str) -> OperatorSettings:
    operator = app.plugins.operator
    if operator is None:
        raise ApiError(409, "this host keeps no operator settings (it has no database)",
                       type="NoDatabase", plugin=name)
    return operator


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.upload")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not keep half a file
        raise
