"""Sidecars: the operator's file of grants, config and limits next to a plugin's ``.wasm``.

``NAME.toml``, ``NAME.yaml`` or ``NAME.yml`` (NAME is the file name without ``.wasm``), with
the keys ``grants`` (or ``[grant.<capability>]`` tables), ``config``, ``limits``, ``enabled``
(specs/abi.md §7), ``mcp`` (``{expose: [HANDLER, ...], resources: bool, prefix: str}``: the
plugin's handlers served as MCP tools, globs allowed; its memories and vectors as resources;
what its tool and prompt names start with), and for
an Extism plugin the Extism manifest keys ``allowed_hosts``, ``allowed_paths``, ``memory``,
``timeout_ms`` (specs/extism.md). :func:`read_sidecar`
validates one; :func:`write_grants` persists grants made on a running host (the console,
``app.plugins.grant(..., persist=True)``) back into it.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnicore.errors import ConfigError
from omnicore.sandbox import grants as grant_rules
from omnicore.sandbox.grants import GrantLayer
from omnicore.sandbox.limits import Limits

__all__ = ["SIDECAR_SUFFIXES", "Sidecar", "read_sidecar", "read_sidecar_data", "sidecar_from",
           "sidecar_paths", "write_grants", "write_sidecar_data"]

SIDECAR_SUFFIXES = (".toml", ".yaml", ".yml")
#: The keys of every sidecar; the Extism manifest's keys (``omnicore.extism.SIDECAR_KEYS``)
#: are known too, and read only when a sidecar holds a key not in this list: importing the
#: Extism package loads its runtime, which a native plugin's load (`omnicore call`) never needs.
_NATIVE_KEYS = ("grants", "grant", "config", "limits", "enabled", "mcp", "routes")


@dataclass(frozen=True)
class Sidecar:
    """The operator's settings for one plugin file. ``path`` is None when there is none."""

    path: Path | None = None
    grants: GrantLayer = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    enabled: bool = True
    #: Extism manifest keys (applied to Extism plugins, refused for native ones at load).
    extism: dict[str, Any] = field(default_factory=dict)
    #: Handler patterns of this plugin served as MCP tools (``mcp.expose``; omnicore.mcp).
    mcp_expose: tuple[str, ...] = ()
    #: Whether this plugin's memories and vectors are MCP resources (``mcp.resources``);
    #: None: as the app config says.
    mcp_resources: bool | None = None
    #: What this plugin's MCP tool and prompt names start with (``mcp.prefix``); None: the
    #: plugin's name and a dot. ``""`` serves them under the handler's (or prompt's) own name.
    mcp_prefix: str | None = None
    #: The operator's HTTP routes of this plugin (``routes``: name -> route, checked by
    #: ``omnicore.routes`` with the app config's; specs/http-routes.md).
    routes: dict[str, Any] = field(default_factory=dict)


def sidecar_paths(wasm: Path) -> list[Path]:
    """The sidecar files that exist next to ``wasm``."""
    return [p for p in (wasm.with_suffix(s) for s in SIDECAR_SUFFIXES) if p.is_file()]


def sidecar_stat(source: str | os.PathLike[str]) -> tuple[str, os.stat_result] | None:
    """The one sidecar of the plugin file ``source`` and its ``stat``; None for none, or for
    two (the host refuses to load such a plugin). For what asks on every poll or call (the
    route table, the MCP tool rules): one ``os.stat`` a suffix, on strings, no pathlib."""
    base = os.path.splitext(os.fspath(source))[0]
    found = None
    for suffix in SIDECAR_SUFFIXES:
        try:
            st = os.stat(base + suffix)
        except (OSError, ValueError):
            continue
        if stat.S_ISREG(st.st_mode):
            if found is not None:
                return None
            found = (base + suffix, st)
    return found


def read_sidecar(wasm: Path) -> Sidecar:
    """Read the sidecar of ``wasm`` (an empty :class:`Sidecar` if there is none).

    Raises :class:`ConfigError` naming the file for syntax errors, unknown keys and values of
    the wrong type.
    """
    found = sidecar_paths(wasm)
    if not found:
        return Sidecar()
    if len(found) > 1:
        names = " and ".join(p.name for p in found)
        raise ConfigError(f"plugin {wasm.name} has two sidecars ({names}); keep one",
                          key=None, source=str(found[0]))
    path = found[0]
    source = str(path)
    # Here: a plugin without a sidecar (a bare `omnicore call`) never needs them.
    import tomllib

    import yaml

    from omnicore import yamlfile

    try:
        text = path.read_text(encoding="utf-8")
        data: object
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        else:
            data = yamlfile.load(text, source)
    except (tomllib.TOMLDecodeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: cannot parse sidecar: {exc}".replace("\n", " "),
                          source=source) from exc
    return sidecar_from(data, source, wasm, path)


def sidecar_from(data: object, source: str, wasm: Path, path: Path | None = None) -> Sidecar:
    """The :class:`Sidecar` a sidecar's parsed ``data`` makes (``None``: an empty one), checked
    as :func:`read_sidecar` checks a file; ``source`` names it in errors (the file, or the
    catalog version it was published with), ``wasm`` is the module it goes with, ``path``
    the sidecar's file if it has one."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: a sidecar must be a table/mapping at the top level",
                          source=source)
    extism_keys: tuple[str, ...] = ()
    if any(key not in _NATIVE_KEYS for key in data):
        from omnicore.extism import SIDECAR_KEYS as extism_keys

    known = (*_NATIVE_KEYS, *extism_keys)
    for key in data:
        if key not in known:
            import difflib  # for the refusal only

            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"{source}: unknown sidecar key '{key}'{hint}; known keys: "
                f"{', '.join(known)}", key=str(key), value=data[key], source=source)
    grants = grant_rules.normalize(data.get("grants"), source=source)
    grant_tables = data.get("grant", {})
    if not isinstance(grant_tables, Mapping):
        raise ConfigError(f"{source}: 'grant' must be a table of capability -> options",
                          key="grant", value=grant_tables, source=source)
    grants.update(grant_rules.normalize(grant_tables, source=source))
    if path is not None:
        _rebase_fs_dirs(grants, path.parent)
    config = data.get("config", {})
    if not isinstance(config, Mapping):
        raise ConfigError(f"{source}: 'config' must be a table/mapping",
                          key="config", value=config, source=source)
    limits = data.get("limits", {})
    try:
        Limits().merged(limits)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}", key=exc.key, value=exc.value,
                          source=source) from exc
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ConfigError(f"{source}: 'enabled' must be true or false, got {enabled!r}",
                          key="enabled", value=enabled, source=source)
    routes = data.get("routes", {})
    if not isinstance(routes, Mapping):
        raise ConfigError(f"{source}: 'routes' must be a table/mapping of route name -> route",
                          key="routes", value=routes, source=source)
    extism = {k: data[k] for k in extism_keys if k in data}
    if extism:
        from omnicore.extism import parse_manifest

        parse_manifest(extism, source, wasm)  # bad values name this file and the key
    return Sidecar(path=path, grants=grants, config=dict(config), limits=dict(limits),
                   enabled=enabled, extism=extism, routes=dict(routes), **_mcp(data, source))


def _rebase_fs_dirs(grants: GrantLayer, folder: Path) -> None:
    """A relative ``path`` of an ``fs`` grant's folder is read from the sidecar's own folder
    (the plugins folder), as one in ``omnicore.yaml`` is read from that file's folder (the app
    folder): never from the folder the host or a command was started in. ``~`` and absolute
    paths stay as written."""
    fs = grants.get("fs")
    dirs = fs.get("dirs") if isinstance(fs, dict) else None
    if fs is None or not isinstance(dirs, list):
        return
    rebased = []
    for entry in dirs:
        where = entry.get("path") if isinstance(entry, Mapping) else None
        if isinstance(where, str) and where and not where.startswith("~") \
                and not Path(where).is_absolute():
            entry = {**entry, "path": str(folder.absolute() / where)}
        rebased.append(entry)
    grants["fs"] = {**fs, "dirs": rebased}


def _mcp(data: Mapping[str, Any], source: str) -> dict[str, Any]:
    mcp = data.get("mcp", {})
    expose = mcp.get("expose", []) if isinstance(mcp, Mapping) else None
    resources = mcp.get("resources") if isinstance(mcp, Mapping) else None
    prefix = mcp.get("prefix") if isinstance(mcp, Mapping) else None
    if (not isinstance(mcp, Mapping) or set(mcp) - {"expose", "resources", "prefix"}
            or not isinstance(expose, list) or not isinstance(resources, bool | None)
            or not all(isinstance(h, str) and h for h in expose)):
        raise ConfigError(f"{source}: 'mcp' must be {{expose: [HANDLER, ...], resources: "
                          "true|false, prefix: STRING}} (handler names or globs of this plugin, "
                          "e.g. ['greet'] or ['*'])", key="mcp", value=mcp, source=source)
    if prefix is not None and (not isinstance(prefix, str) or len(prefix) > 64
                               or not re.fullmatch(r"[A-Za-z0-9_.-]*", prefix)):
        raise ConfigError(f"{source}: 'mcp.prefix' must be at most 64 of A-Z a-z 0-9 _ . - "
                          "(\"\" for none)", key="mcp.prefix", value=prefix, source=source)
    return {"mcp_expose": tuple(expose), "mcp_resources": resources, "mcp_prefix": prefix}


def write_grants(wasm: Path, grants: Mapping[str, Mapping[str, Any] | None]) -> Path:
    """Persist ``grants`` (one layer; ``None`` revokes) into the sidecar of ``wasm``.

    The sidecar's other keys are kept; a TOML sidecar stays TOML and a YAML one YAML, and a
    plugin without a sidecar gets ``NAME.yaml``. The file is replaced atomically, so the folder
    watcher never reads half of it. Comments in the old file are not kept.
    """
    current = read_sidecar(wasm)  # validates the file before it is rewritten
    data = read_sidecar_data(wasm)
    data.pop("grant", None)
    source = str(current.path or wasm.with_suffix(".yaml"))
    table = grant_rules.merge(current.grants, grant_rules.normalize(grants, source=source))
    # Revocations of this layer are kept as `false`, so they still win over the app config.
    revoked = {name: False for name, opts in grants.items() if opts is None}
    data["grants"] = {**{name: opts or True for name, opts in table.items()}, **revoked}
    return write_sidecar_data(wasm, data)


def read_sidecar_data(wasm: Path) -> dict[str, Any]:
    """The raw keys of ``wasm``'s sidecar (``{}`` without one), after validating it."""
    current = read_sidecar(wasm)
    if current.path is None:
        return {}
    import tomllib

    from omnicore import yamlfile

    text = current.path.read_text(encoding="utf-8")
    loaded = (tomllib.loads(text) if current.path.suffix == ".toml"
              else yamlfile.load(text, str(current.path)))
    return dict(loaded or {})


def write_sidecar_data(wasm: Path, data: Mapping[str, Any]) -> Path:
    """Replace ``wasm``'s sidecar with ``data``, atomically, in the format it has (TOML stays
    TOML, YAML stays YAML; ``NAME.yaml`` when there is none). ConfigError if TOML cannot hold
    a value."""
    found = sidecar_paths(wasm)
    path = found[0] if found else wasm.with_suffix(".yaml")
    import yaml

    body = (_dump_toml(data) if path.suffix == ".toml"
            else yaml.safe_dump(dict(data), sort_keys=True))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _dump_toml(data: Mapping[str, Any]) -> str:
    """A small TOML writer for sidecar data (scalars, lists and nested tables)."""
    import json

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return repr(v)
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, Mapping):
            return "{" + ", ".join(f"{json.dumps(str(k))} = {value(x)}"
                                   for k, x in v.items()) + "}"
        raise ConfigError(f"cannot write {v!r} into a TOML sidecar", value=v)

    lines: list[str] = []
    tables: list[str] = []
    for key, v in data.items():
        if isinstance(v, Mapping):
            tables.append(f"\n[{key}]")
            tables.extend(f"{json.dumps(str(k))} = {value(x)}" for k, x in v.items())
        else:
            lines.append(f"{key} = {value(v)}")
    return "\n".join(lines + tables).lstrip("\n") + "\n"
