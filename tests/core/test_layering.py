"""A lower layer never imports a higher one (specs/host.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import omnicore

PKG = Path(omnicore.__file__).parent
HIGHER = ("omnicore.sandbox", "omnicore.capabilities", "omnicore.console", "omnicore.cli",
          "omnicore.toolchains", "omnicore.modules")
LOWER = ("core", "config", "runtime", "plugins", "adapters")


def test_lower_layers_do_not_import_higher_ones_at_runtime() -> None:
    offenders = []
    for layer in LOWER:
        for path in (PKG / layer).rglob("*.py"):
            tree = ast.parse(path.read_text())
            # Imports under `if TYPE_CHECKING:` are for annotations only.
            guarded = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
                       and getattr(block.test, "id", "") == "TYPE_CHECKING"
                       for n in ast.walk(block)}
            for node in ast.walk(tree):
                if id(node) in guarded or not isinstance(node, ast.Import | ast.ImportFrom):
                    continue
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [
                    a.name for a in node.names]
                # The app reaches modules/ lazily for the typed app.health accessor only.
                allowed = layer == "core" and path.name == "app.py"
                offenders += [f"{path.relative_to(PKG)}: {n}" for n in names
                              if n.startswith(HIGHER) and not allowed]
    assert offenders == []


def test_importing_the_core_loads_no_higher_layer() -> None:
    code = ("import sys, omnicore.core.app, omnicore.config, omnicore.runtime, "
            "omnicore.plugins, omnicore.adapters\n"
            f"print([m for m in sys.modules if m.startswith({HIGHER!r})])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"
