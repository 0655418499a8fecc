"""Bundling with esbuild: TypeScript, relative imports and npm packages into one ES module.

``omnicore`` stays external (the runtime provides it). The bundle ends with a few lines of JS
made from esbuild's source map (:mod:`omnicore.toolchains.js.sourcemap`), so stack traces name
the author's files, not the bundle.
"""

from __future__ import annotations

import json
import re
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
        said = (proc.stderr or proc.stdout).strip()
        raise BuildError(f"esbuild could not bundle {entry.name}:\n{said[-4000:]}"
                         f"{_unresolved_hint(said, project)}",
                         plugin=entry.stem, toolchain=LANGUAGE)
    mapper = stack_mapper(out.with_name("bundle.js.map"), project or entry.parent)
    return out.read_bytes() + mapper.encode()


_UNRESOLVED = re.compile(r'Could not resolve "(?P<spec>[^"./][^"]*)"')


def _unresolved_hint(said: str, project: Path | None) -> str:
    """What to do about a package esbuild could not resolve: name it in package.json (the
    build installs what package.json names, and again whenever it or its lock file
    changes)."""
    names = []
    for match in _UNRESOLVED.finditer(said):
        spec = match["spec"]
        name = "/".join(spec.split("/")[:2]) if spec.startswith("@") else spec.split("/")[0]
        if name != "omnicore" and name not in names and not name.startswith("node:"):
            names.append(name)
    if not names:
        return ""
    declared: set[str] = set()
    if project is not None and (project / "package.json").is_file():
        try:
            pkg = json.loads((project / "package.json").read_text(encoding="utf-8"))
            declared = {*pkg.get("dependencies", {}), *pkg.get("devDependencies", {})}
        except ValueError:
            pass
    missing = [n for n in names if n not in declared]
    if not missing:
        return ""
    where = f" in {project}" if project is not None else " (in a folder with a package.json)"
    return (f"\n{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not among "
            f"package.json's dependencies: add {'it' if len(missing) == 1 else 'them'} "
            f"(`npm install {' '.join(missing)}`{where}); a build installs what package.json "
            "names, again whenever it changes")
