"""A JS/TS plugin's own unit tests: ``node --test`` with the SDK's Node test host."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from omnicore.errors import BuildError
from omnicore.toolchains import UnitTests, locations
from omnicore.toolchains.js.commands import LANGUAGE
from omnicore.toolchains.js.npm import ensure_esbuild, install_deps

__all__ = ["TEST_FILE", "unit_tests"]

#: A test file of the project (`plugin.test.js`), run by node --test and never built.
TEST_FILE = re.compile(r"(^|[._-])test\.(m?[jt]s)$")


def unit_tests(src: Path) -> UnitTests:
    """``node --test`` on the project's ``*.test.js``/``*.test.ts`` files, with the SDK's
    Node test host (``sdk/js/testing``) answering ``import ... from "omnicore"``."""
    node = shutil.which("node")
    plugin = src.stem if src.is_file() else src.name
    if node is None:
        raise BuildError("JS/TS unit tests run on Node.js 20+, and `node` is not on PATH",
                         plugin=plugin, toolchain=LANGUAGE)
    project = src if src.is_dir() else src.parent
    files = sorted(p for p in project.rglob("*") if p.is_file() and TEST_FILE.search(p.name)
                   and "node_modules" not in p.relative_to(project).parts)
    if not files:
        raise BuildError(f"{project}: no test files (plugin.test.js or plugin.test.ts; "
                         f"`omnicore new plugin --lang js` writes one)", plugin=plugin,
                         toolchain=LANGUAGE)
    if (project / "package.json").is_file():
        install_deps(project)
    env = dict(os.environ)
    if any(p.suffix in (".ts", ".mts") for p in files):
        # The test host strips types with esbuild's JS API: the package beside the binary.
        package = Path(ensure_esbuild(project)).resolve().parents[1]
        if (package / "package.json").is_file():
            env["OMNICORE_ESBUILD_PACKAGE"] = str(package)
    register = locations.sdk_dir("js") / "testing" / "register.js"
    argv = [node, "--enable-source-maps", "--import", register.as_uri(), "--test",
            *(str(p) for p in files)]
    return UnitTests(argv, env, project)
