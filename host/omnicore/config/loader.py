"""Layered config: defaults < adapter < omnicore.yaml < OMNICORE_* env < overrides.

Each layer is a nested dict plus the source of every leaf it sets, so a validation error can
say which key, which value and where it came from (``omnicore.yaml:12``,
``env OMNICORE_LOG__LEVEL``, ``override``), and ``omnicore config show`` can print the
source of each effective value.
"""

from __future__ import annotations

import difflib
import logging
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import yaml
from pydantic import BaseModel, ValidationError

from omnicore import yamlfile
from omnicore.adapters import Environment, detect
from omnicore.config.schema import RENAMED, OmniConfig, masked_url
from omnicore.errors import ConfigError

__all__ = ["ENV_PREFIX", "is_secret_key", "load_config", "render_config"]

ENV_PREFIX = "OMNICORE_"
# Not config keys: CLI settings (`omnicore run` reads the app dir, `--debug` its flag).
_ENV_RESERVED = frozenset({"OMNICORE_APPDIR", "OMNICORE_DEBUG"})
_SECRET_WORDS = ("secret", "password", "passwd", "token", "api_key", "apikey", "credential",
                 "private_key")
_PATH_KEYS = (("data_dir",), ("plugins_dir",), ("sandbox", "cache_dir"), ("sandbox", "baked_dir"),
              ("workflows", "dir"), ("registry", "ca_file"), ("registry", "docker_config"))

Key = tuple[str, ...]

log = logging.getLogger("omnicore.config")


class _Layer:
    __slots__ = ("data", "sources")

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.sources: dict[Key, str] = {}

    def set(self, key: Key, value: Any, source: str) -> None:
        node = self.data
        for part in key[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[key[-1]] = value
        self.sources[key] = source

    def merge(self, data: Mapping[str, Any], source: str | Mapping[Key, str],
              prefix: Key = ()) -> None:
        for k, v in data.items():
            key = (*prefix, str(k))
            if isinstance(v, Mapping) and v:
                self.merge(v, source, key)
            else:
                src = source if isinstance(source, str) else source.get(key, "file")
                self.set(key, v, src)


def _yaml_lines(node: yaml.Node, prefix: Key, out: dict[Key, int]) -> None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode):
                key = (*prefix, str(k.value))
                out[key] = k.start_mark.line + 1
                _yaml_lines(v, key, out)


def _read_file(path: Path) -> tuple[dict[str, Any], dict[Key, str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}",
                          source=str(path)) from exc
    try:
        data = yamlfile.load(text, str(path))
        root = yamlfile.compose(text, str(path))
    except yamlfile.DuplicateKeyError as exc:
        where = f"{path}:{exc.line}"
        raise ConfigError(f"invalid YAML in {where}: {exc.problem}", key=str(exc.key),
                          source=where) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(f"invalid YAML in {where}: {problem}", source=where) from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML in {path}: {exc}", source=str(path)) from exc
    if data is None:
        return {}, {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of keys (like `name: my-app`), "
                          f"not a {type(data).__name__}", source=str(path))
    lines: dict[Key, int] = {}
    if root is not None:
        _yaml_lines(root, (), lines)
    return data, {k: f"{path}:{n}" for k, n in lines.items()}


def _env_layer(environ: Mapping[str, str], layer: _Layer) -> None:
    for var in sorted(environ):
        if not var.startswith(ENV_PREFIX) or var in _ENV_RESERVED:
            continue
        raw = environ[var]
        key = tuple(p.lower() for p in var[len(ENV_PREFIX):].split("__"))
        if len(key) == 1 and key[0] not in OmniConfig.model_fields:
            # Tools share the prefix (OMNICORE_CARGO, OMNICORE_ESBUILD...): a single-segment
            # name is config only if it names a top-level key, or is a typo of one.
            near = difflib.get_close_matches(key[0], list(OmniConfig.model_fields), n=1,
                                             cutoff=0.8)
            if near:
                raise ConfigError(f"environment variable {var} is not a config key; did you "
                                  f"mean {ENV_PREFIX}{near[0].upper()}?", key=key[0],
                                  value=raw, source=f"env {var}")
            continue
        if not all(key):
            raise ConfigError(f"environment variable {var} does not name a config key "
                              f"(use __ between nested keys, e.g. OMNICORE_LOG__LEVEL)",
                              key=var, value=raw, source=f"env {var}")
        value: Any = raw
        # Lists and mappings can only travel as text; accept YAML/JSON flow syntax for them.
        if raw.lstrip()[:1] in ("[", "{"):
            try:
                value = yamlfile.load(raw, f"env {var}")
            except yaml.YAMLError as exc:
                raise ConfigError(f"environment variable {var} is not valid YAML/JSON: {raw!r}",
                                  key=".".join(key), value=raw, source=f"env {var}") from exc
        layer.set(key, value, f"env {var}")


def _override_layer(overrides: Mapping[str, Any], layer: _Layer) -> None:
    for k, v in overrides.items():
        key = tuple(str(k).split("."))
        if isinstance(v, Mapping) and v:
            layer.merge(v, "override", key)
        else:
            layer.set(key, v, "override")


def _deep_merge(base: dict[str, Any], top: Mapping[str, Any]) -> None:
    for k, v in top.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _deep_merge(base[k], v)
        else:
            base[k] = dict(v) if isinstance(v, Mapping) else v


def _model_at(path: Key) -> type[BaseModel] | None:
    """The pydantic model that holds the keys at ``path`` (``()`` is the root)."""
    model: type[BaseModel] = OmniConfig
    i = 0
    while i < len(path):
        field = model.model_fields.get(path[i])
        if field is None:
            return None
        ann = field.annotation
        origin = typing.get_origin(ann)
        if origin in (typing.Union, types.UnionType):
            ann = next((a for a in typing.get_args(ann) if a is not type(None)), ann)
            origin = typing.get_origin(ann)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
            i += 1
        elif origin is dict:
            inner = typing.get_args(ann)[1]
            if not (isinstance(inner, type) and issubclass(inner, BaseModel)):
                return None
            model = inner
            i += 2
        else:
            return None
    return model


def _first_error(exc: ValidationError, sources: Mapping[Key, str]) -> ConfigError:
    errors = exc.errors()
    err = errors[0]
    # Union members show up in the location as type tags ("list[str]"); they are not keys.
    loc = tuple(str(p) for p in err["loc"] if "[" not in str(p))
    # A union (e.g. grants: list | dict) reports one error per branch; the key is the shared
    # prefix, which is what the operator wrote.
    key = ".".join(loc)
    value = err.get("input")
    src = None
    probe = loc
    while probe:
        src = sources.get(probe)
        if src:
            break
        probe = probe[:-1]
    if not src:
        # An unknown section is reported at the section, but its source is on its leaves.
        src = next((v for k, v in sources.items() if k[:len(loc)] == loc), None)
    where = src or "default"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if err["type"] == "extra_forbidden":
        model = _model_at(loc[:-1])
        hint = ""
        if model is not None:
            near = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
            if near:
                hint = f"; did you mean {'.'.join((*loc[:-1], near[0]))!r}?"
            else:
                hint = f"; known keys here: {', '.join(model.model_fields)}"
        msg = f"unknown config key {key!r} ({where}){hint}{more}"
    else:
        msg = f"invalid value {value!r} for {key!r} ({where}): {err['msg']}{more}"
    return ConfigError(msg, key=key, value=value, source=where)


def _resolve_paths(cfg: OmniConfig, base: Path) -> None:
    for key in _PATH_KEYS:
        owner: Any = cfg
        for part in key[:-1]:
            owner = getattr(owner, part)
        value = getattr(owner, key[-1])
        if value is not None:
            p = Path(os.path.expandvars(os.path.expanduser(str(value))))
            setattr(owner, key[-1], p if p.is_absolute() else (base / p).resolve())
    if cfg.sandbox.cache_dir is None:
        cfg.sandbox.cache_dir = cfg.data_dir / "cache"
    # plugins.trust.keys: a key file is relative to the config's folder; PEM text stays.
    cfg.trust.keys = [k if "-----BEGIN" in k else str(base / Path(os.path.expanduser(k)))
                      for k in cfg.trust.keys]
    # plugins.<name>.grants.fs.dirs[].path: the same rule (the sandbox would read a relative
    # one from whatever folder the host was started in).
    for plugin in cfg.plugins.values():
        fs = plugin.grants.get("fs") if isinstance(plugin.grants, dict) else None
        dirs = fs.get("dirs") if isinstance(fs, dict) else None
        for entry in dirs if isinstance(dirs, list) else ():
            path = entry.get("path") if isinstance(entry, dict) else None
            if isinstance(path, str) and path and not path.startswith("~") \
                    and not Path(path).is_absolute():
                entry["path"] = str(base / path)
    # connectors.<name>.url's ?sslrootcert= (a CA file): the same rule, written back absolute
    # (egress/db/config.py refuses one still relative, as in a URL from a secret).
    for connector in cfg.connectors.values():
        if connector.url and "sslrootcert=" in connector.url:
            connector.url = _absolute_sslrootcert(connector.url, base)


def _absolute_sslrootcert(url: str, base: Path) -> str:
    """``url`` with a relative ``sslrootcert`` query parameter made absolute from ``base``."""
    head, sep, query = url.partition("?")
    parts = []
    for part in query.split("&"):
        name, eq, value = part.partition("=")
        if unquote(name) == "sslrootcert" and eq:
            path = os.path.expandvars(os.path.expanduser(unquote(value)))
            if path and not os.path.isabs(path):
                part = f"{name}={quote(str(base / path), safe='/')}"
        parts.append(part)
    return head + sep + "&".join(parts)


def _check_cache_outside_data(cfg: OmniConfig, sources: Mapping[Key, str]) -> None:
    """Refuse a ``sandbox.cache_dir`` that is the data dir or holds it: the compiled-module
    folder is the one hosts share (a volume, a copied folder), and whoever reads it would read
    the data dir's secret-store key and database too. A cache inside the data dir (the
    default, ``<data_dir>/cache``) is fine: reading it reads only compiled modules."""
    cache, data = cfg.sandbox.cache_dir, cfg.data_dir
    if cache is None:
        return
    cache_real, data_real = Path(cache).resolve(), Path(data).resolve()
    if not data_real.is_relative_to(cache_real):
        return
    where = sources.get(("sandbox", "cache_dir"), "default")
    what = "is" if cache_real == data_real else "holds"
    raise ConfigError(
        f"sandbox.cache_dir {cache_real} ({where}) {what} the data dir {data_real} "
        f"({sources.get(('data_dir',), 'default')}): whoever reads the module cache would "
        "read the secret store's key and the database too; set sandbox.cache_dir to a folder "
        f"that does not hold {data_real} (the default, {data_real / 'cache'}, is fine), or "
        f"move data_dir out of {cache_real}", key="sandbox.cache_dir", value=str(cache),
        source=where)


def _rename_old_keys(data: dict[str, Any], sources: dict[Key, str]) -> None:
    """Move each section still under its old name (:data:`RENAMED`) to its new one, with
    its sources; the new name's values win where both are set. One warning per old name."""
    for old, new in RENAMED.items():
        parent: Any = data
        for part in old[:-1]:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or old[-1] not in parent:
            continue
        value = parent.pop(old[-1])
        if isinstance(value, dict) and isinstance(parent.get(new[-1]), dict):
            _deep_merge(value, parent[new[-1]])
        elif new[-1] in parent:
            value = parent[new[-1]]
        parent[new[-1]] = value
        moved = {k: v for k, v in sources.items() if k[:len(old)] == old}
        for key, where in moved.items():
            del sources[key]
            sources.setdefault((*new, *key[len(old):]), where)
        log.warning("config: %s is now called %s (%s); the old name still works",
                    ".".join(old), ".".join(new), min(moved.values(), default="set"))


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environment: Environment | None = None,
) -> OmniConfig:
    """Build the effective config from the file at ``path``, env vars and ``overrides``.

    ``environ`` defaults to ``os.environ``; ``overrides`` takes nested dicts or dotted keys
    (``{"log.level": "debug"}``). Relative paths resolve against the file's folder, or the
    working directory without a file. Raise :class:`ConfigError` naming key, value, source.
    """
    env = os.environ if environ is None else environ
    file_layer, env_layer, over_layer = _Layer(), _Layer(), _Layer()
    base = Path.cwd()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist", source=str(p))
        data, lines = _read_file(p)
        file_layer.merge(data, lines)
        base = p.resolve().parent
    _env_layer(env, env_layer)
    _override_layer(overrides or {}, over_layer)

    upper: dict[str, Any] = {}
    sources: dict[Key, str] = {}
    for layer in (file_layer, env_layer, over_layer):
        _deep_merge(upper, layer.data)
        sources.update(layer.sources)
    _rename_old_keys(upper, sources)
    # plugins.trust is held as `trust` (OmniConfig._trust_among_plugins): its sources too.
    for key in [k for k in sources if k[:2] == ("plugins", "trust")]:
        sources[("trust", *key[2:])] = sources.pop(key)

    configured = upper.get("environment")
    if environment is None:
        try:
            environment = detect(env, configured=configured if isinstance(configured, str)
                                 else None)
        except ValueError as exc:
            src = sources.get(("environment",), "default")
            raise ConfigError(f"{exc} ({src})", key="environment", value=configured,
                              source=src) from None
    adapter = _Layer()
    adapter.merge(environment.defaults, f"adapter {environment.kind}")
    merged: dict[str, Any] = {}
    _deep_merge(merged, adapter.data)
    _deep_merge(merged, upper)
    all_sources = {**adapter.sources, **sources}
    try:
        cfg = OmniConfig.model_validate(merged)
    except ValidationError as exc:
        raise _first_error(exc, all_sources) from None
    _resolve_paths(cfg, base)
    _check_cache_outside_data(cfg, all_sources)
    cfg._sources = {".".join(k): v for k, v in all_sources.items()}
    return cfg


def is_secret_key(key: str) -> bool:
    """Whether a config key (its last dotted part) names a secret: its value is masked."""
    last = key.rsplit(".", 1)[-1].lower()
    return any(word in last for word in _SECRET_WORDS)


def _flatten(value: Any, prefix: str, out: list[tuple[str, Any]]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(v, f"{prefix}.{k}" if prefix else str(k), out)
    else:
        out.append((prefix, value))


def render_config(cfg: OmniConfig, *, mask: bool = True) -> list[tuple[str, str, str]]:
    """``(key, value, source)`` rows of the effective config; secrets masked unless told."""
    rows: list[tuple[str, Any]] = []
    _flatten(cfg.model_dump(mode="json"), "", rows)
    out = []
    for key, value in rows:
        if mask and is_secret_key(key) and value not in (None, "", {}, []):
            text = "****"
        elif mask and key == "storage.url" and isinstance(value, str):
            text = masked_url(value)  # the password only: the rest says where the data is
        else:
            text = yaml.safe_dump(value, default_flow_style=True, width=1 << 16).strip()
            text = text.removesuffix("\n...").removesuffix("...").strip()
        out.append((key, text, cfg.source_of(key)))
    return out
