"""The code keeps to the layer table of specs/host.md: a module imports only from its own
layer and the ones below it (imports under ``if TYPE_CHECKING:`` are annotations only)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import threading
from pathlib import Path

import omnicore

PKG = Path(omnicore.__file__).parent
SPEC = Path(__file__).parents[2] / "specs" / "host.md"


def layers_from_spec() -> dict[str, int]:
    """``{top-level name: rank}`` from the spec's layer table (rank 0 is the lowest)."""
    block = SPEC.read_text().split("<!-- layers -->")[1]
    ranks: dict[str, int] = {}
    for rank, line in enumerate(row for row in block.strip().splitlines() if row.startswith("|")
                                and not row.startswith("| rank") and "---" not in row):
        names = line.split("|")[2]
        for name in re.findall(r"`([a-z_]+)(?:/|\.py)?`", names):
            ranks[name] = rank
    return ranks


def top(module: str) -> str:
    return module.split(".")[1] if module.count(".") else "__init__"


def _parse(path: Path) -> ast.Module:
    # On a thread of its own: CPython 3.11's AST validator counts recursion depth per thread,
    # and after a RecursionError caught elsewhere in a long test session (hostile tests cause
    # some on purpose) it can fail with "AST constructor recursion depth mismatch".
    out: list[ast.Module | BaseException] = []

    def run() -> None:
        try:
            out.append(ast.parse(path.read_text()))
        except BaseException as exc:
            out.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]


def imports(path: Path) -> list[str]:
    tree = _parse(path)
    guarded = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If)
               and getattr(block.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(block)}
    found = []
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [m for m in found if m.startswith("omnicore.")]


def test_every_package_is_in_the_layer_table() -> None:
    ranks = layers_from_spec()
    on_disk = {p.stem if p.is_file() else p.name for p in PKG.iterdir()
               if (p.suffix == ".py" and p.stem != "__init__")
               or (p.is_dir() and (p / "__init__.py").exists())}
    assert on_disk - set(ranks) == set(), "add these to specs/host.md's layer table"
    assert set(ranks) - on_disk == set(), "the layer table names what does not exist"


def test_no_module_imports_a_higher_layer() -> None:
    ranks = layers_from_spec()
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        own = rel.parts[0].removesuffix(".py")
        if own == "__init__":
            continue  # the package face re-exports from every layer, lazily
        for module in imports(path):
            other = top(module)
            if other != own and ranks.get(other, 99) > ranks[own]:
                offenders.append(f"{rel}: {module} (layer {ranks.get(other)} > {ranks[own]})")
    assert offenders == []


def test_the_old_app_location_is_only_an_alias() -> None:
    # `omnicore.core.app` stays importable for the seed examples; it must hold no code.
    tree = _parse(PKG / "core" / "app.py")
    assert not [n for n in tree.body if isinstance(n, ast.ClassDef)]


def test_importing_the_lower_layers_loads_no_higher_one() -> None:
    code = ("import sys, omnicore.core.app, omnicore.core.tasks, omnicore.config, "
            "omnicore.runtime, omnicore.extensions, omnicore.adapters, omnicore.modules\n"
            "print(sorted({m.split('.')[1] for m in sys.modules "
            "if m.startswith('omnicore.') and m.count('.')}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == repr(sorted(["adapters", "config", "core", "errors", "extensions",
                               "logging", "modules", "runtime"]))
