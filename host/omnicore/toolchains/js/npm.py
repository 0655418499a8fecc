"""npm and the tools it installs: esbuild, tsc, and a project's own dependencies.

A project's own ``node_modules`` tool wins; otherwise the one configured or on PATH; otherwise
omnicore installs a pinned version into the build cache (``js-tools/``), once, under a lock
(``scripts/setup-toolchains.sh`` does it ahead of time).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from omnicore.errors import BuildError
from omnicore.toolchains import locations
from omnicore.toolchains.js.commands import LANGUAGE, run
from omnicore.toolchains.js.typecheck import TYPESCRIPT_VERSION, find_tsc
from omnicore.toolchains.locations import locked

__all__ = ["ESBUILD_VERSION", "ensure_esbuild", "ensure_tsc", "esbuild", "install_deps"]

ESBUILD_VERSION = "0.25.12"


def _tools() -> Path:
    """Where omnicore installs the npm tools it needs (``js-tools/`` in the build cache)."""
    return locations.cache_dir() / "js-tools"


def esbuild() -> str | None:
    """An esbuild binary: the project's, ``$OMNICORE_ESBUILD``, PATH, or the cached one."""
    configured = os.environ.get("OMNICORE_ESBUILD")
    if configured:
        return configured
    cached = _tools() / "node_modules" / ".bin" / "esbuild"
    return str(cached) if cached.exists() else shutil.which("esbuild")


def ensure_esbuild(project: Path | None = None) -> str:
    """The esbuild to use for ``project``, installed from npm into the build cache if needed."""
    if project is not None:
        local = project / "node_modules" / ".bin" / "esbuild"
        if local.exists():
            return str(local)
    found = esbuild()
    if found:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError("TypeScript, relative imports and npm packages need esbuild, and npm "
                         "is not installed: install Node.js 18+ (npm), or `npm i -g esbuild`, "
                         "or write the plugin as one plain .js file importing only \"omnicore\"",
                         toolchain=LANGUAGE)
    tools = _tools()
    with locked(tools / ".lock"):
        if not (tools / "node_modules" / ".bin" / "esbuild").exists():
            run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(tools),
                 f"esbuild@{ESBUILD_VERSION}"], f"npm install esbuild@{ESBUILD_VERSION}")
    return str(tools / "node_modules" / ".bin" / "esbuild")


def ensure_tsc(project: Path | None = None) -> str:
    """The tsc to type-check ``project`` with, installed from npm into the build cache if
    needed (``scripts/setup-toolchains.sh`` installs it ahead of time)."""
    tools = _tools()
    found = find_tsc(project, tools)
    if found:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError("TypeScript plugins are type-checked with tsc, and npm is not "
                         "installed: install Node.js 18+ (npm), or `npm i -g typescript`",
                         toolchain=LANGUAGE)
    with locked(tools / ".lock"):
        if find_tsc(None, tools) is None:
            package = f"typescript@{TYPESCRIPT_VERSION}"
            run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(tools), package],
                f"npm install {package}")
    return str(tools / "node_modules" / ".bin" / "tsc")


def install_deps(project: Path) -> None:
    """``npm ci`` (or ``install``) in ``project`` when its dependencies are not installed
    or its lock file is newer than what is."""
    pkg = json.loads((project / "package.json").read_text(encoding="utf-8"))
    if not pkg.get("dependencies") and not pkg.get("devDependencies"):
        return
    if _deps_current(project):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError(f"{project} has npm dependencies but npm is not installed: install "
                         "Node.js 18+ and run `npm ci` there", plugin=project.name,
                         toolchain=LANGUAGE)
    # Two builds of one project (into two folders) must not both run `npm ci`, which deletes
    # node_modules first; the lock is outside the project, where `npm ci` cannot remove it.
    with locked(_tools() / ".deps.lock"):
        if _deps_current(project):
            return
        command = "ci" if (project / "package-lock.json").exists() else "install"
        run([npm, command, "--no-audit", "--no-fund"], f"npm {command} in {project}",
            cwd=project)


def _deps_current(project: Path) -> bool:
    lock = project / "package-lock.json"
    installed = project / "node_modules" / ".package-lock.json"  # written by npm on install
    return installed.exists() and (not lock.exists()
                                   or lock.stat().st_mtime <= installed.stat().st_mtime)
