"""Bundling with esbuild: TypeScript, relative imports and npm packages into one ES module.

``omnicore`` stays external (the runtime provides it). The bundle ends with a few lines of JS
made from esbuild's source map (:mod:`omnicore.toolchains.js.sourcemap`), so stack traces name
the author's files, not the bundle.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from omnicore.errors import BuildError
from omnicore.toolchains.js.commands import BUILD_TIMEOUT_S, LANGUAGE
from omnicore.toolchains.js.npm import ensure_esbuild, install_deps
from omnicore.toolchains.js.sourcemap import stack_mapper

__all__ = ["bundle"]


def bundle(entry: Path, project: Path | None, work: Path) -> bytes:
    """One ES module, with JS appended that maps its stack frames to the original files."""
    if project is not None and (project / "package.json").is_file():
        install_deps(project)
    tool = ensure_esbuild(project)
    out = (work / "bundle.js").resolve()  # esbuild runs in the project folder
    cmd = [tool, str(entry.resolve()), "--bundle", "--format=esm", "--platform=neutral",
           "--target=es2023", "--external:omnicore", "--main-fields=module,main",
           "--sourcemap=external", "--log-level=error", f"--outfile={out}"]
    try:
        proc = subprocess.run(cmd, cwd=project or entry.parent, capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"esbuild failed: {exc}", toolchain=LANGUAGE) from exc
    if proc.returncode != 0:
        raise BuildError(f"esbuild could not bundle {entry.name}:\n"
                         f"{(proc.stderr or proc.stdout).strip()[-4000:]}",
                         plugin=entry.stem, toolchain=LANGUAGE)
    mapper = stack_mapper(out.with_name("bundle.js.map"), project or entry.parent)
    return out.read_bytes() + mapper.encode()
