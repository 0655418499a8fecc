"""Type-checking TypeScript plugins with ``tsc`` before they are bundled.

esbuild only strips types, so ``const x: number = "s"`` would build. The check runs ``tsc
--noEmit`` on a config in the build's work dir that extends the project's own
``tsconfig.json`` (if any) and points ``"omnicore"`` at this installation's SDK types, so a
project copied from another machine (whose scaffolded path no longer exists) still checks.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from omnicore.errors import BuildError

__all__ = ["TYPESCRIPT_VERSION", "find_tsc", "typecheck"]

TYPESCRIPT_VERSION = "5.9.3"
_TIMEOUT_S = 300
# `plugin.ts(3,7): error TS2322: ...` -> `plugin.ts:3:7: error TS2322: ...`
_POSITION = re.compile(r"^(?P<file>[^\s(][^(]*)\((?P<line>\d+),(?P<col>\d+)\): ", re.MULTILINE)


def find_tsc(project: Path | None, tools: Path) -> str | None:
    """The project's own tsc, else the one omnicore installs into ``tools``, else PATH's."""
    for folder in ([project] if project is not None else []) + [tools]:
        local = folder / "node_modules" / ".bin" / "tsc"
        if local.exists():
            return str(local)
    return shutil.which("tsc")


def typecheck(tsc: str, entry: Path, project: Path | None, sdk_types: Path, work: Path,
              plugin: str) -> None:
    """Run tsc on ``entry``; a type error raises :class:`BuildError` with tsc's messages."""
    root = project if project is not None else entry.parent
    options = {"noEmit": True, "skipLibCheck": True,
               "paths": {"omnicore": [str(sdk_types)]}}
    config: dict[str, object] = {"compilerOptions": options, "files": [str(entry.resolve())]}
    own = root / "tsconfig.json"
    if own.is_file():
        config["extends"] = str(own.resolve())
    else:
        options.update(strict=True, target="ES2023", module="ES2022",
                       moduleResolution="bundler", types=[])
    tsconfig = work / "tsconfig.check.json"
    tsconfig.write_text(json.dumps(config, indent=2), encoding="utf-8")
    try:
        proc = subprocess.run([tsc, "-p", str(tsconfig), "--pretty", "false"], cwd=root,
                              capture_output=True, text=True, timeout=_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"tsc failed: {exc}", plugin=plugin, toolchain="js") from exc
    if proc.returncode != 0:
        text = (proc.stdout or proc.stderr).strip()
        text = _POSITION.sub(lambda m: f"{m['file']}:{m['line']}:{m['col']}: ", text)
        raise BuildError(f"type errors in {entry.name} (tsc):\n{text[-4000:]}", plugin=plugin,
                         toolchain="js")
