"""An Extism manifest as omnicore grants, config and limits (specs/extism.md).

The keys come from ``NAME.json`` next to the plugin and from the same keys in its sidecar
(the sidecar's win, key by key). They become one layer of settings at the sidecar's rank:
``config`` the plugin's config (every Extism plugin may read it: no grant), ``allowed_hosts`` and
``memory.max_http_response_bytes`` an ``http`` grant, ``timeout_ms`` and ``memory.max_pages``
limits; ``memory.max_var_bytes``, the ``wasm`` list's other modules (linked by name, with the
sidecar's ``link`` table) and ``allowed_paths`` stay with the Extism runtime.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from omnicore.errors import ConfigError
from omnicore.sandbox.grants import GrantLayer
from omnicore.sandbox.wasi_fd import parse_dirs

__all__ = ["DEFAULT_MAX_VAR_BYTES", "MAIN", "SIDECAR_KEYS", "ExtismManifest",
           "allowed_hosts_rules", "manifest_path", "parse_manifest", "read_manifest"]

#: Extism's default for ``memory.max_var_bytes``.
DEFAULT_MAX_VAR_BYTES = 1024 * 1024
#: The Extism manifest keys a sidecar may hold (``config`` is a sidecar key of its own).
SIDECAR_KEYS = ("allowed_hosts", "allowed_paths", "memory", "timeout_ms", "link")
#: The name of the plugin's own module in a ``wasm`` list (Extism's ``MAIN_KEY``).
MAIN = "main"
_PAGE = 65536
_LIMITS = ("timeout_ms", "memory.max_pages", "memory.max_var_bytes",
           "memory.max_http_response_bytes")
_SUPPORTED = ("wasm, config, allowed_hosts, allowed_paths, timeout_ms, memory.max_pages, "
              "memory.max_var_bytes, memory.max_http_response_bytes")


@dataclass(frozen=True)
class ExtismManifest:
    """What omnicore takes from an Extism manifest. ``path`` is None when there is no file."""

    path: Path | None = None
    config: dict[str, str] = field(default_factory=dict)
    limits: dict[str, int] = field(default_factory=dict)
    grants: dict[str, dict[str, Any]] = field(default_factory=dict)
    max_var_bytes: int = DEFAULT_MAX_VAR_BYTES
    #: Modules linked by name (the ``wasm`` list's others, the sidecar's ``link``).
    links: dict[str, Path] = field(default_factory=dict)
    #: ``allowed_paths``: host directory -> guest path, as Extism writes them (``ro:`` prefix).
    allowed_paths: dict[str, str] = field(default_factory=dict)

    def under(self, grants: GrantLayer, config: Mapping[str, Any], limits: Mapping[str, Any]
              ) -> tuple[GrantLayer, dict[str, Any], dict[str, Any]]:
        """This manifest's layer under a sidecar's own ``grants``, ``config`` and ``limits``.

        The sidecar wins key by key, except that an ``http`` grant in both adds up (the
        sidecar's options apply and its ``allow_hosts`` and ``allow_addresses`` join the
        manifest's), and so does an ``fs`` grant (its ``dirs`` join ``allowed_paths``).
        """
        merged: GrantLayer = {name: dict(opts) for name, opts in self.grants.items()}
        for name, opts in grants.items():
            mine = merged.get(name)
            if name == "fs" and opts is not None and mine is not None:
                merged[name] = {**mine, **opts,
                                "dirs": [*mine.get("dirs", []), *opts.get("dirs", [])]}
            elif name == "http" and opts is not None and mine is not None:
                joined: dict[str, Any] = {
                    key: list(dict.fromkeys([*mine.get(key, []), *opts.get(key, [])]))
                    for key in ("allow_hosts", "allow_addresses") if key in mine or key in opts}
                merged[name] = {**mine, **opts, **joined}
            else:
                merged[name] = None if opts is None else dict(opts)
        return merged, {**self.config, **config}, {**self.limits, **limits}


def manifest_path(wasm: Path) -> Path:
    """Where the Extism manifest of ``wasm`` lives: ``NAME.json`` beside it."""
    return wasm.with_suffix(".json")


def read_manifest(wasm: Path | None, sidecar: Mapping[str, Any] | None = None,
                  sidecar_path: Path | None = None) -> ExtismManifest:
    """The manifest of ``wasm``: ``NAME.json`` (if there is one) under ``sidecar``'s Extism
    keys (:data:`SIDECAR_KEYS`, from ``sidecar_path``).

    Raises ConfigError (one line, naming the file and key) for bad JSON, bad values and
    keys omnicore does not support.
    """
    data: dict[str, Any] = {}
    path = manifest_path(wasm) if wasm is not None else None
    if path is not None and path.is_file():
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"{path}: cannot read the Extism manifest: {exc}"
                              .replace("\n", " "), source=str(path)) from None
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"{path}: an Extism manifest must be a JSON object",
                              source=str(path))
        data = _flat(loaded)
    else:
        path = None
    if sidecar:
        data.update(_flat(sidecar))
    if not data:
        return ExtismManifest()
    where = " and ".join(str(p) for p in (path, sidecar_path if sidecar else None) if p)
    mapped = parse_manifest(data, where or "the Extism manifest", wasm)
    # The sidecar's ``link`` table joins the manifest's ``wasm`` list (a name in both: the
    # sidecar's, read after it).
    return replace(mapped, path=path)


def _flat(data: Mapping[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key == "memory" and isinstance(value, Mapping):
            flat.update({f"memory.{k}": v for k, v in value.items()})
        else:
            flat[str(key)] = value
    return flat


def parse_manifest(data: Mapping[str, Any], src: str, wasm: Path | None = None
                   ) -> ExtismManifest:
    """Map Extism manifest keys (``memory`` as a table or flattened ``memory.*`` keys) read
    from ``src`` (named in errors); ``wasm`` is the plugin file the manifest must describe."""

    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{src}: Extism manifest key '{key}': {why}", key=key,
                           value=None, source=src)

    config: dict[str, str] = {}
    limits: dict[str, int] = {}
    http: dict[str, Any] = {}
    max_var = DEFAULT_MAX_VAR_BYTES
    links: dict[str, Path] = {}
    paths: dict[str, str] = {}
    fs_dirs: list[dict[str, Any]] = []
    base = wasm.parent if wasm is not None else Path(".")
    for key, value in _flat(data).items():
        if key == "wasm":
            links.update(_sources(value, wasm, base, bad))
        elif key == "link":
            links.update(_link_table(value, base, bad))
        elif key == "config":
            if not isinstance(value, Mapping) or not all(
                    isinstance(v, str) for v in value.values()):
                raise bad(key, "must be an object of string values")
            config = {str(k): v for k, v in value.items()}
        elif key == "allowed_hosts":
            if value is None:
                continue
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise bad(key, "must be a list of host names")
            if value:
                http.update(allowed_hosts_rules(value, bad))
        elif key == "allowed_paths":
            if value is None:
                continue
            if not isinstance(value, Mapping) or not all(
                    isinstance(k, str) and k and isinstance(v, str) and v
                    for k, v in value.items()):
                raise bad(key, "must be an object of host directory -> guest path strings "
                               "(prefix the directory with 'ro:' for read-only)")
            paths = {str(k): v for k, v in value.items()}
            fs_dirs.extend(_fs_grant(paths, base, bad))
        elif key in _LIMITS:
            if value is None:
                continue
            floor = 0 if key == "memory.max_var_bytes" else 1
            if not isinstance(value, int) or isinstance(value, bool) or value < floor:
                raise bad(key, f"must be an integer >= {floor}, got {value!r}")
            if key == "timeout_ms":
                limits["timeout_ms"] = value
            elif key == "memory.max_pages":
                limits["max_memory_bytes"] = value * _PAGE
            elif key == "memory.max_var_bytes":
                max_var = value
            else:
                http["max_response_bytes"] = value
        else:
            raise bad(key, f"not supported by omnicore (supported: {_SUPPORTED})")
    grants: dict[str, dict[str, Any]] = {}
    if http:
        grants["http"] = http
    if fs_dirs:
        grants["fs"] = {"dirs": fs_dirs}
    return ExtismManifest(config=config, limits=limits, grants=grants, max_var_bytes=max_var,
                          links=links, allowed_paths=paths)


#: Addresses a manifest names by writing ``localhost`` (Extism connects to them).
_LOOPBACK = ("127.0.0.0/8", "::1/128")
#: An IPv4 glob whose last octets are ``*`` (``10.1.*``, ``127.0.0.*``) names that network.
_IPV4_PREFIX = re.compile(r"((?:\d{1,3}\.){1,3})\*")


def allowed_hosts_rules(patterns: list[str], bad: Callable[[str, str], ConfigError]
                        ) -> dict[str, list[str]]:
    """Extism's ``allowed_hosts`` as http grant options: ``allow_hosts`` rules and the
    ``allow_addresses`` the manifest names.

    Extism matches each entry as a glob against the URL's host, any scheme and port, so each
    becomes ``http://ENTRY:*`` and ``https://ENTRY:*`` (the http grant matches glob hosts as
    Extism does). What a name resolves to still passes omnicore's address policy: a private
    address is reached only when the manifest names it, as an IP (``127.0.0.1``), an IPv4
    glob ending in ``*`` (``10.1.*``: that network) or ``localhost`` (the loopback networks);
    ``*`` and name globs never name one (specs/extism.md).
    An entry with a scheme, port or path is refused (Extism would never match it).
    """
    rules: list[str] = []
    addresses: list[str] = []
    for pattern in patterns:
        host = pattern.strip().lower().rstrip(".")
        try:
            ip = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            ip = None
        if ip is not None:
            host = f"[{ip}]" if ip.version == 6 else str(ip)
        elif not host or host.startswith("[") or any(c in host for c in "/:@ \t"):
            raise bad("allowed_hosts", f"{pattern!r}: write a host name, an IP address or a "
                                       "glob of host names ('*.example.com', '*'); Extism "
                                       "matches the host only, never a scheme, port or path")
        if host == "localhost":
            addresses.extend(_LOOPBACK)
        prefix = _IPV4_PREFIX.fullmatch(host)
        if prefix is not None:
            octets = prefix.group(1).rstrip(".").split(".")
            if all(int(o) < 256 for o in octets):
                net = ".".join(octets + ["0"] * (4 - len(octets)))
                addresses.append(f"{net}/{8 * len(octets)}")
        rules += [f"http://{host}:*", f"https://{host}:*"]
    out = {"allow_hosts": list(dict.fromkeys(rules))}
    if addresses:
        out["allow_addresses"] = list(dict.fromkeys(addresses))
    return out


def _sources(value: Any, wasm: Path | None, base: Path,
             bad: Callable[[str, str], ConfigError]) -> dict[str, Path]:
    """The ``wasm`` list: the plugin file itself (Extism's ``main``: the entry named so, else
    the last) and the modules linked to it by name, as Extism names them."""
    if not isinstance(value, list) or not value:
        raise bad("wasm", "must be a non-empty list of sources")
    named: dict[str, str] = {}
    for i, source in enumerate(value):
        if not isinstance(source, Mapping) or set(source) - {"path", "name", "hash"} or \
                not isinstance(source.get("path"), str):
            raise bad("wasm", "only {\"path\": ...} sources are supported (no url or data "
                              "sources); the plugin file is one of them")
        name = source.get("name", MAIN)
        if not isinstance(name, str) or not name:
            raise bad("wasm", f"entry {i}: 'name' must be a non-empty string")
        if len(value) == 1 or (i == len(value) - 1 and MAIN not in named):
            name = MAIN  # as Extism: one module, or the last when none is named main
        if name in named:
            raise bad("wasm", f"Duplicate module name found in Extism manifest: {name} (name "
                              "every module but the plugin's own)")
        named[name] = source["path"]
        hash_ = source.get("hash")
        if hash_ is not None and name != MAIN:
            _check_hash(base / source["path"], hash_, bad)
    main = Path(named[MAIN])
    if wasm is not None and main.name != wasm.name:
        raise bad("wasm", f"the main module is {named[MAIN]!r}, but this manifest belongs to "
                          f"{wasm.name}")
    return _link_table({k: v for k, v in named.items() if k != MAIN}, base, bad, "wasm")


def _fs_grant(paths: Mapping[str, str], base: Path,
              bad: Callable[[str, str], ConfigError]) -> list[dict[str, Any]]:
    """``allowed_paths`` as the ``fs`` grant's ``dirs``: as in Extism, a host directory is
    read-write unless it starts with ``ro:``; relative ones are from the plugin's folder."""
    dirs = []
    for host, guest in paths.items():
        readonly = host.startswith("ro:")
        path = host[3:] if readonly else host
        dirs.append({"path": str(base / path), "guest": guest, "write": not readonly})
    try:
        parse_dirs(dirs, "allowed_paths")
    except ConfigError as exc:
        raise bad("allowed_paths", str(exc).removeprefix("allowed_paths: ")) from None
    return dirs


#: Names a link cannot take: the kernel and WASI stay omnicore's.
_RESERVED = ("extism:host/env", "wasi_snapshot_preview1", MAIN)


def _link_table(value: Any, base: Path, bad: Callable[[str, str], ConfigError],
                key: str = "link") -> dict[str, Path]:
    if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and k and isinstance(v, str) and v for k, v in value.items()):
        raise bad(key, "must map module names to .wasm paths")
    for name in value:
        if name in _RESERVED:
            raise bad(key, f"a module cannot be linked as {name!r}: that name is Extism's "
                           "kernel, WASI or the plugin itself")
    return {str(k): base / v for k, v in value.items()}


def _check_hash(path: Path, want: Any, bad: Callable[[str, str], ConfigError]) -> None:
    try:
        got = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise bad("wasm", f"cannot read {path}: {exc.strerror or exc}") from None
    if got != str(want).lower():
        raise bad("wasm", f"Hash mismatch for {path}: the manifest says {want}, the file is "
                          f"{got}")
