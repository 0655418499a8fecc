"""SQL statements in a JS/TS plugin are its constants: the check ``omnicore build`` and
``omnicore test`` run on its sources (specs/abi.md §4.10.1).

``statements.cjs`` reads each source with the TypeScript compiler's parser (the tsc the type
check installs) and lists the ``.query(...)``/``.execute(...)`` calls whose statement is not a
string literal, a template literal without ``${}``, a ``+`` of those, or a name declared once
in its file by a top-level ``const`` bound to one. A tagged statement (``db.query`... ${v}```)
passes by construction: its values are parameters. The check runs only on a plugin that imports
``sql`` from ``"omnicore"``, on its own files (not ``node_modules``, not its tests).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from omnicore.errors import BuildError
from omnicore.toolchains import SKIP_DIRS
from omnicore.toolchains.js.commands import BUILD_TIMEOUT_S, LANGUAGE
from omnicore.toolchains.js.npm import ensure_tsc
from omnicore.toolchains.js.source import SOURCES, used_capabilities
from omnicore.toolchains.js.testing import TEST_FILE

__all__ = ["HINT", "lint"]

_SCRIPT = Path(__file__).with_name("statements.cjs")
#: What to do about a refused statement, said once after them.
HINT = ("a SQL statement must be the plugin's constant (a string literal, or a top-level const "
        "bound to one): put every value in params, as db.query(\"select qty from stock where "
        "sku = $1\", [sku]), or use the tag, db.query`select qty from stock where sku = "
        "${sku}` (specs/abi.md §4.10.1)")


def _sources(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix in SOURCES
                  and not p.name.endswith(".d.ts") and not TEST_FILE.search(p.name)
                  and not SKIP_DIRS & set(p.relative_to(src).parts[:-1]))


def lint(src: Path) -> None:
    """BuildError listing the SQL statements of the plugin at ``src`` that are not constants
    (nothing to check when no source imports ``sql``)."""
    plugin = src.stem if src.is_file() else src.name
    files = [p for p in _sources(src)
             if "sql" in used_capabilities(p.read_text(encoding="utf-8", errors="replace"))]
    if not files:
        return
    node = shutil.which("node")
    typescript = Path(ensure_tsc(src if src.is_dir() else None)).resolve().parent.parent / \
        "lib" / "typescript.js"
    if node is None or not typescript.is_file():
        raise BuildError("checking the SQL statements needs node and the typescript package's "
                         f"lib/typescript.js (looked at {typescript})", plugin=plugin,
                         toolchain=LANGUAGE)
    try:
        proc = subprocess.run([node, str(_SCRIPT), str(typescript), *map(str, files)],
                              capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"checking the SQL statements failed: {exc}", plugin=plugin,
                         toolchain=LANGUAGE) from exc
    if proc.returncode != 0:
        raise BuildError(f"checking the SQL statements failed:\n{proc.stderr.strip()[-4000:]}",
                         plugin=plugin, toolchain=LANGUAGE)
    root = src.parent if src.is_file() else src
    found = [f"{Path(p['file']).relative_to(root)}:{p['line']}: the statement of "
             f"{p['method']}() is {p['what']}" for p in json.loads(proc.stdout)]
    if found:
        head = (f"{len(found)} SQL statement{'s' if len(found) > 1 else ''} built at run time, "
                f"refused:")
        raise BuildError("\n".join([head, *found, HINT]), plugin=plugin, toolchain=LANGUAGE)
