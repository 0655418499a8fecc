"""A JS plugin's source: where its entry file is, and which capabilities it imports.

A JS plugin project is a folder with ``plugin.js``/``plugin.ts`` (or ``src/plugin.*``,
``index.*``, or the ``main`` of its ``package.json``), or a single ``.js``/``.ts`` file.
"""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

__all__ = ["CAPABILITIES", "FOREIGN_IMPORT", "SOURCES", "detect", "entry", "used_capabilities"]

#: The namespaces of specs/abi.md §4 in the runtime's capability-mask bit order.
CAPABILITIES = ("log", "config", "kv", "memory", "vectors", "tasks", "http", "events", "secrets",
                "sql", "redis", "mcp")
#: The suffixes of plugin sources (TypeScript ones are type-checked and bundled).
SOURCES = (".js", ".mjs", ".ts", ".mts")
#: How the runtime's module loader refuses an import other than "omnicore" (omnicore_js.c).
FOREIGN_IMPORT = "ReferenceError: cannot import"

_ENTRIES = ("plugin.ts", "plugin.js", "plugin.mjs", "src/plugin.ts", "src/plugin.js",
            "index.ts", "index.js")
_IMPORT_OMNICORE = re.compile(
    r"""\bimport\s*(?:\{(?P<named>[^}]*)\}|\*\s*as\s+(?P<ns>[A-Za-z_$][\w$]*))\s*from\s*["']omnicore["']""")
_DYNAMIC_OMNICORE = re.compile(r"""\bimport\s*\(\s*["']omnicore["']\s*\)""")


def detect(src: Path) -> bool:
    """A ``.js``/``.ts`` file, or a folder holding one of the entry files."""
    if src.is_file():
        return src.suffix in SOURCES
    return src.is_dir() and entry(src) is not None


def entry(src: Path) -> Path | None:
    """The file the plugin at ``src`` starts from, or None."""
    if src.is_file():
        return src
    pkg = src / "package.json"
    if pkg.is_file():
        with contextlib.suppress(ValueError, OSError):
            main = json.loads(pkg.read_text(encoding="utf-8")).get("main")
            if isinstance(main, str) and (src / main).is_file() and main.endswith(SOURCES):
                return src / main
    return next((src / e for e in _ENTRIES if (src / e).is_file()), None)


def used_capabilities(source: str) -> set[str]:
    """The ``omnicore`` namespaces a (bundled) ES module imports; ``log`` is always linked."""
    used = {"log"}
    if _DYNAMIC_OMNICORE.search(source):
        return set(CAPABILITIES)
    for match in _IMPORT_OMNICORE.finditer(source):
        if match["ns"]:
            rest = source[match.end():]
            name = re.escape(match["ns"])
            members = re.findall(rf"(?<![\w$.]){name}\s*\.\s*([\w$]+)", rest)
            if len(members) != len(re.findall(rf"(?<![\w$.]){name}(?![\w$])", rest)):
                return set(CAPABILITIES)  # the namespace object escapes: link everything
            used |= set(members)
        else:
            for part in match["named"].split(","):
                used.add(part.strip().split(" as ")[0].strip())
    return used & set(CAPABILITIES)
