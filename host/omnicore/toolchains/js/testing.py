"""A JS/TS plugin's own unit tests: ``node --test``, the plugin's host calls answered by
omnicore's test host (``testhost/served.py``, one server per test file's process)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

from omnicore.errors import BuildError
from omnicore.toolchains import UnitTests, locations
from omnicore.toolchains.js.commands import LANGUAGE
from omnicore.toolchains.js.npm import ensure_esbuild, install_deps
from omnicore.toolchains.js.source import entry

__all__ = ["TEST_FILE", "unit_tests"]

#: A test file of the project (`plugin.test.js`), run by node --test and never built.
TEST_FILE = re.compile(r"(^|[._-])test\.(m?[jt]s)$")
_EXPORT = re.compile(r"\bexport\s+(?:async\s+)?(?:function\*?|const|let|var|class)\s+([\w$]+)")
_EXPORT_LIST = re.compile(r"\bexport\s*\{([^}]*)\}")


def _handlers(project: Path) -> list[str]:
    """The names the plugin's entry exports (the handlers tasks may enqueue in a test)."""
    start = entry(project)
    if start is None:
        return []
    source = start.read_text(encoding="utf-8", errors="replace")
    names = set(_EXPORT.findall(source))
    for listed in _EXPORT_LIST.findall(source):
        names.update(part.split(" as ")[-1].strip() for part in listed.split(",") if part.strip())
    names.discard("default")
    return sorted(names)


def unit_tests(src: Path) -> UnitTests:
    """``node --test`` on the project's ``*.test.js``/``*.test.ts`` files, with the SDK's
    testing module (``sdk/js/testing``) answering ``import ... from "omnicore"`` through
    omnicore's test host."""
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
    env["OMNICORE_TEST_HOST"] = json.dumps([sys.executable, "-m",
                                            "omnicore.toolchains.testhost.served"])
    env["OMNICORE_TEST_HANDLERS"] = json.dumps(_handlers(project))
    if any(p.suffix in (".ts", ".mts") for p in files):
        # The test host strips types with esbuild's JS API: the package beside the binary.
        package = Path(ensure_esbuild(project)).resolve().parents[1]
        if (package / "package.json").is_file():
            env["OMNICORE_ESBUILD_PACKAGE"] = str(package)
    register = locations.sdk_dir("js") / "testing" / "register.js"
    argv = [node, "--enable-source-maps", "--import", register.as_uri(), "--test",
            *(str(p) for p in files)]
    return UnitTests(argv, env, project)
