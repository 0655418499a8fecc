"""The code keeps to the layer table of specs/host.md: a module imports only from its own
layer and the ones below it, type-only imports (``if TYPE_CHECKING:``) included, two
packages of the same layer never import each other both ways, and no modules anywhere import
one another in a circle (lazy imports in a function body and type-only ones counted)."""

from __future__ import annotations

import ast
import graphlib
import re
import subprocess
import sys
from pathlib import Path

import omnicore
from tests.pysource import parse

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
    return parse(path.read_text())


def imports(path: Path) -> list[str]:
    """Every ``omnicore.*`` module ``path`` imports, at any depth, type-only ones included."""
    found = []
    for node in ast.walk(_parse(path)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [m for m in found if m.startswith("omnicore.")]


def package_imports() -> dict[str, dict[str, str]]:
    """``{package: {package it imports: the first module that does}}``, across packages."""
    edges: dict[str, dict[str, str]] = {}
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG)
        own = rel.parts[0].removesuffix(".py")
        if own == "__init__":
            continue  # the package face re-exports from every layer, lazily
        for module in imports(path):
            other = top(module)
            if other != own:
                edges.setdefault(own, {}).setdefault(other, str(rel))
    return edges


def upward(edges: dict[str, dict[str, str]], ranks: dict[str, int]) -> list[str]:
    return [f"{where}: omnicore.{other} (layer {ranks.get(other)} > {ranks[own]})"
            for own, out in edges.items() for other, where in out.items()
            if ranks.get(other, 99) > ranks[own]]


def both_ways(edges: dict[str, dict[str, str]], ranks: dict[str, int]) -> list[str]:
    return sorted(f"{a} <-> {b} ({edges[a][b]}, {edges[b][a]})"
                  for a in edges for b in edges[a]
                  if a < b and ranks.get(a) == ranks.get(b) and a in edges.get(b, {}))


def module_name(path: Path, root: Path = PKG) -> str:
    """``omnicore.sandbox.module`` for ``sandbox/module.py`` (a package is its ``__init__``)."""
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_graph(root: Path = PKG) -> dict[str, set[str]]:
    """``{module: the modules of the package it imports}``: at any depth, so an import in a
    function body or under ``if TYPE_CHECKING:`` is an edge like any other.

    ``from a.b import c`` is an edge to ``a.b.c`` when that is a module, else to ``a.b``. The
    top package's face is left out: it names every layer, lazily, for the public API.
    """
    paths = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    graph = {}
    for name, path in paths.items():
        found = set()
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in paths
                          else node.module for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {a.name for a in node.names}
        graph[name] = {m for m in found if m in paths and m not in (name, root.name)}
    return graph


def circles(graph: dict[str, set[str]]) -> list[str]:
    """Each circle a depth-first walk meets, as ``a -> b -> a``."""
    found: list[str] = []
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, trail: list[str]) -> None:
        state[m] = 1
        for d in sorted(graph[m]):
            if state.get(d) == 1:
                found.append(" -> ".join([*trail[trail.index(d):], d]))
            elif d not in state:
                visit(d, [*trail, d])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def test_every_package_is_in_the_layer_table() -> None:
    ranks = layers_from_spec()
    on_disk = {p.stem if p.is_file() else p.name for p in PKG.iterdir()
               if (p.suffix == ".py" and p.stem != "__init__")
               or (p.is_dir() and (p / "__init__.py").exists())}
    assert on_disk - set(ranks) == set(), "add these to specs/host.md's layer table"
    assert set(ranks) - on_disk == set(), "the layer table names what does not exist"


def test_no_module_imports_a_higher_layer() -> None:
    assert upward(package_imports(), layers_from_spec()) == []


def test_no_two_packages_of_one_layer_import_each_other() -> None:
    assert both_ways(package_imports(), layers_from_spec()) == []


def test_the_packages_import_one_another_without_a_circle() -> None:
    # The two rules above imply it but for a circle of three in one layer; this says it
    # outright, and CycleError names the circle.
    edges = package_imports()
    graphlib.TopologicalSorter({a: set(out) for a, out in edges.items()}).prepare()


def test_no_modules_import_one_another_in_a_circle() -> None:
    found = circles(module_graph())
    assert found == [], "\n".join(found)


def test_a_circle_through_a_lazy_or_type_only_import_is_caught(tmp_path: Path) -> None:
    # The check's own hostile test: the two ways a circle hides from the interpreter.
    pkg = tmp_path / "pkg"
    (pkg / "kinds").mkdir(parents=True)
    for face in (pkg / "__init__.py", pkg / "kinds" / "__init__.py"):
        face.write_text("")
    (pkg / "door.py").write_text("def load():\n    from pkg.kinds import component\n")
    (pkg / "kinds" / "component.py").write_text("from pkg.door import load\n")
    (pkg / "record.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                   "    import pkg.service\n")
    (pkg / "service.py").write_text("from pkg import record\n")
    (pkg / "fine.py").write_text("import pkg\nfrom pkg import record\n")
    assert circles(module_graph(pkg)) == ["pkg.door -> pkg.kinds.component -> pkg.door",
                                          "pkg.record -> pkg.service -> pkg.record"]


def test_a_type_only_import_upward_is_caught(tmp_path: Path) -> None:
    # The rule's own hostile test: an upward import hidden under TYPE_CHECKING (the way the
    # old circle was closed) and, as its sibling, one inside a function body.
    guarded = tmp_path / "guarded.py"
    guarded.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                       "    from omnicore.app import OmniApp\n")
    nested = tmp_path / "nested.py"
    nested.write_text("def f():\n    import omnicore.plugins.host\n")
    ranks = layers_from_spec()
    for path, target in ((guarded, "app"), (nested, "plugins")):
        edges = {"core": {top(m): str(path) for m in imports(path)}}
        assert upward(edges, ranks) == [f"{path}: omnicore.{target} "
                                        f"(layer {ranks[target]} > {ranks['core']})"]


def test_two_packages_of_one_layer_importing_each_other_are_caught() -> None:
    ranks = layers_from_spec()
    same = [name for name in ranks if ranks[name] == ranks["egress"]]
    a, b = sorted(same)[:2]
    edges = {a: {b: "x.py"}, b: {a: "y.py"}}
    assert both_ways(edges, ranks) == [f"{a} <-> {b} (x.py, y.py)"]
    assert both_ways({a: {b: "x.py"}}, ranks) == []  # one way is allowed


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
