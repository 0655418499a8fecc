"""What a TypeScript plugin's handlers take and give, read from its types at build time.

esbuild strips the types and QuickJS never sees them, so they are read here, before the
bundle, by ``describe.cjs`` on the TypeScript compiler API (the tsc the type check uses): a
handler ``export function add(input: Json<AddIn>): AddOut`` gets AddIn's and AddOut's JSON
Schemas, its JSDoc comment is its description (``@title``, ``@destructive`` tags). Plain
JavaScript has no types to read: its handlers are described in ``omnicore.toml``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from omnicore.errors import BuildError
from omnicore.toolchains import locations
from omnicore.toolchains.js.commands import BUILD_TIMEOUT_S, LANGUAGE
from omnicore.toolchains.js.npm import ensure_tsc
from omnicore.toolchains.js.source import entry

__all__ = ["handler_descriptions"]

_SCRIPT = Path(__file__).with_name("describe.cjs")


def handler_descriptions(src: Path) -> dict[str, dict[str, Any]]:
    """Each exported handler's description and schemas from a TypeScript entry's types, by
    handler; nothing for JavaScript."""
    start = entry(src)
    if start is None or start.suffix not in (".ts", ".mts"):
        return {}
    node = shutil.which("node")
    project = src if src.is_dir() else None
    # node_modules/.bin/tsc links to typescript/bin/tsc; the compiler API is lib/typescript.js.
    typescript = Path(ensure_tsc(project)).resolve().parent.parent / "lib" / "typescript.js"
    if node is None or not typescript.is_file():
        raise BuildError("describing TypeScript handlers needs node and the typescript "
                         f"package's lib/typescript.js (looked at {typescript})",
                         plugin=src.stem, toolchain=LANGUAGE)
    cmd = [node, str(_SCRIPT), str(typescript), str(start),
           str(locations.sdk_dir("js") / "index.d.ts")]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"describing the handlers failed: {exc}", plugin=src.stem,
                         toolchain=LANGUAGE) from exc
    if proc.returncode != 0:
        raise BuildError(f"describing the handlers failed:\n{proc.stderr.strip()[-4000:]}",
                         plugin=src.stem, toolchain=LANGUAGE)
    described: dict[str, dict[str, Any]] = json.loads(proc.stdout)
    return described
