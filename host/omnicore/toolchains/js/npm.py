"""npm and the tools it installs: esbuild, tsc, and a project's own dependencies.

A project's own ``node_modules`` tool wins; otherwise the one configured or on PATH; otherwise
omnicore installs a pinned version into the build cache (``js-tools/``), once, under a lock
(``scripts/setup-toolchains.sh`` does it ahead of time).
"""

from __future__ import annotations

import hashlib
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
    return esbuild() or _installed(
        "esbuild", f"esbuild@{ESBUILD_VERSION}",
        "TypeScript, relative imports and npm packages need esbuild, and npm is not installed: "
        "install Node.js 18+ (npm), or `npm i -g esbuild`, or write the plugin as one plain .js "
        "file importing only \"omnicore\"")


def ensure_tsc(project: Path | None = None) -> str:
    """The tsc to type-check ``project`` with, installed from npm into the build cache if
    needed (``scripts/setup-toolchains.sh`` installs it ahead of time)."""
    return find_tsc(project, _tools()) or _installed(
        "tsc", f"typescript@{TYPESCRIPT_VERSION}",
        "TypeScript plugins are type-checked with tsc, and npm is not installed: install "
        "Node.js 18+ (npm), or `npm i -g typescript`")


def _installed(tool: str, package: str, without_npm: str) -> str:
    """``tool`` of npm's ``package`` (pinned) in the build cache, installed there once, under
    the cache's lock, by whichever build needs it first; BuildError ``without_npm``."""
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError(without_npm, toolchain=LANGUAGE)
    tools = _tools()
    binary = tools / "node_modules" / ".bin" / tool
    with locked(tools / ".lock"):
        if not binary.exists():
            run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(tools), package],
                f"npm install {package}")
    return str(binary)


def install_deps(project: Path) -> None:
    """``npm ci`` (or ``install``) in ``project`` when what ``package.json`` and
    ``package-lock.json`` declare is not what its ``node_modules`` holds: never installed, or
    either file changed since the install omnicore made (a stamp in ``node_modules`` holds
    their digests). A dependency added to ``package.json`` after the first build is installed
    by the next one, not left for esbuild to call unresolvable."""
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
        # `npm ci` installs the lock file as it is, and refuses one out of step with
        # package.json: a package.json edited since the last install (its lock unchanged) is
        # `npm install`'s, which brings the lock file up to date too.
        stamp = _stamp(project)
        edited = stamp is not None and stamp.get("package.json") != _digest(
            project / "package.json") and stamp.get("package-lock.json") == _digest(
            project / "package-lock.json")
        command = "ci" if (project / "package-lock.json").exists() and not edited else "install"
        run([npm, command, "--no-audit", "--no-fund"], f"npm {command} in {project}",
            cwd=project)
        (project / "node_modules" / STAMP).write_text(json.dumps({
            name: _digest(project / name) for name in ("package.json", "package-lock.json")}))


#: What omnicore's last install in a project installed: the digests of its package.json and
#: package-lock.json then.
STAMP = ".omnicore-deps.json"


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _stamp(project: Path) -> dict[str, str | None] | None:
    try:
        found = json.loads((project / "node_modules" / STAMP).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _deps_current(project: Path) -> bool:
    installed = project / "node_modules" / ".package-lock.json"  # written by npm on install
    if not installed.exists():
        return False
    stamp = _stamp(project)
    if stamp is not None:
        return all(stamp.get(name) == _digest(project / name)
                   for name in ("package.json", "package-lock.json"))
    # Installed by hand (`npm ci` there): current while the lock file is not newer and every
    # dependency package.json names is installed.
    lock = project / "package-lock.json"
    if lock.exists() and lock.stat().st_mtime > installed.stat().st_mtime:
        return False
    pkg = json.loads((project / "package.json").read_text(encoding="utf-8"))
    try:
        packages = json.loads(installed.read_text(encoding="utf-8")).get("packages", {})
    except ValueError:
        return False
    declared = {*pkg.get("dependencies", {}), *pkg.get("devDependencies", {})}
    return all(f"node_modules/{name}" in packages for name in declared)
