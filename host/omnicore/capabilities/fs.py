"""``fs``: directories of the host a plugin reads (and writes) through WASI (specs/extism.md).

No ``omnicore:fs`` functions: the grant's directories are the WASI preopens of the plugin's
instances, served by :mod:`omnicore.sandbox.wasi_fs` (read-only unless ``write = true``;
absolute paths, ``..`` and symlinks refused). An Extism manifest's ``allowed_paths`` becomes
this grant; an operator adds directories with ``[grant.fs] dirs = [{path, guest, write}]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from omnicore.errors import ConfigError
from omnicore.sandbox import capability as cap
from omnicore.sandbox.wasi_fd import parse_dirs

__all__ = ["CAPABILITY"]


def _check_grant(options: Mapping[str, Any]) -> None:
    unknown = set(options) - {"dirs"}
    if unknown:
        raise ConfigError(f"unknown option(s) for grant 'fs': {', '.join(sorted(unknown))}; "
                          "known: dirs", key=f"grant.fs.{sorted(unknown)[0]}")
    parse_dirs(options.get("dirs", []), "grant.fs.dirs")


CAPABILITY = cap.Capability(
    name="fs",
    description="host directories as WASI preopens (read-only unless write = true)",
    functions=(),
    check_grant=_check_grant,
)
