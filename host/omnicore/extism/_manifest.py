"""An Extism manifest (``NAME.json`` next to the plugin) as omnicore config, grants and limits."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omnicore.errors import ConfigError

__all__ = ["DEFAULT_MAX_VAR_BYTES", "ExtismManifest", "manifest_path", "read_manifest"]

#: Extism's default for ``memory.max_var_bytes``.
DEFAULT_MAX_VAR_BYTES = 1024 * 1024
_PAGE = 65536
_UNSUPPORTED = {
    "allowed_hosts": "HTTP is not available to Extism plugins until omnicore's http "
                     "capability lands",
    "allowed_paths": "omnicore gives Extism plugins no filesystem access",
    "memory.max_http_response_bytes": "HTTP is not available to Extism plugins until "
                                      "omnicore's http capability lands",
}


@dataclass(frozen=True)
class ExtismManifest:
    """What omnicore takes from an Extism manifest. ``path`` is None when there is none."""

    path: Path | None = None
    config: dict[str, str] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)
    max_var_bytes: int = DEFAULT_MAX_VAR_BYTES


def manifest_path(wasm: Path) -> Path:
    """Where the Extism manifest of ``wasm`` lives: ``NAME.json`` beside it."""
    return wasm.with_suffix(".json")


def read_manifest(wasm: Path | None) -> ExtismManifest:
    """Read the manifest next to ``wasm`` (an empty one when there is no file).

    Raises ConfigError (one line, naming the file and key) for bad JSON, bad values and
    keys omnicore does not support.
    """
    if wasm is None or not manifest_path(wasm).is_file():
        return ExtismManifest()
    path = manifest_path(wasm)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the Extism manifest: {exc}".replace("\n", " "),
                          source=str(path)) from None
    return parse_manifest(data, path, wasm)


def parse_manifest(data: Any, path: Path, wasm: Path | None = None) -> ExtismManifest:
    """Map a decoded Extism manifest; ``wasm`` is the plugin file it must describe."""
    src = str(path)

    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{src}: Extism manifest key '{key}': {why}", key=key,
                           value=None, source=src)

    if not isinstance(data, Mapping):
        raise ConfigError(f"{src}: an Extism manifest must be a JSON object", source=src)
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key == "memory" and isinstance(value, Mapping):
            flat.update({f"memory.{k}": v for k, v in value.items()})
        else:
            flat[str(key)] = value
    config: dict[str, str] = {}
    limits: dict[str, int] = {}
    max_var = DEFAULT_MAX_VAR_BYTES
    for key, value in flat.items():
        if key in _UNSUPPORTED:
            if value in (None, [], {}):
                continue
            raise bad(key, f"not supported: {_UNSUPPORTED[key]}")
        if key == "wasm":
            _check_sources(value, wasm, bad)
        elif key == "config":
            if not isinstance(value, Mapping) or not all(
                    isinstance(v, str) for v in value.values()):
                raise bad(key, "must be an object of string values")
            config = {str(k): v for k, v in value.items()}
        elif key in ("timeout_ms", "memory.max_pages", "memory.max_var_bytes"):
            if value is None:
                continue
            floor = 0 if key == "memory.max_var_bytes" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < floor:
                raise bad(key, f"must be an integer >= {floor}, got {value!r}")
            if key == "timeout_ms":
                limits["timeout_ms"] = value
            elif key == "memory.max_pages":
                limits["max_memory_bytes"] = value * _PAGE
            else:
                max_var = value
        else:
            raise bad(key, "not supported by omnicore (supported: wasm, config, timeout_ms, "
                           "memory.max_pages, memory.max_var_bytes)")
    return ExtismManifest(path=path, config=config, limits=limits, max_var_bytes=max_var)


def _check_sources(value: Any, wasm: Path | None, bad: Any) -> None:
    # The plugin file is what omnicore loads; the manifest may only describe that file.
    if not isinstance(value, list):
        raise bad("wasm", "must be a list of sources")
    for source in value:
        if not isinstance(source, Mapping) or set(source) - {"path", "name", "hash"}:
            raise bad("wasm", "only {\"path\": ...} sources naming the plugin file itself are "
                              "supported (no url or data sources)")
        named = source.get("path")
        if wasm is not None and isinstance(named, str) and Path(named).name != wasm.name:
            raise bad("wasm", f"names {named!r}, but this manifest belongs to {wasm.name}")
