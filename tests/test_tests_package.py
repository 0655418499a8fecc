"""tests/ is a package: every folder with Python in it has an ``__init__.py``, and a helper
module is imported by its dotted name (``tests.host_fixtures``), never by a bare name that
only resolves while pytest puts that helper's folder on sys.path. Bare names made test
basenames collide and broke as soon as a helper moved, or ran under another import mode."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.pysource import parse

TESTS = Path(__file__).parent
ROOT = TESTS.parent


def _sources() -> list[Path]:
    """The suite's own Python: not the plugins written in Python that tests build (a folder
    with a ``plugin.py``, as ``omnicore build`` knows one, is a plugin's source)."""
    plugins = [p.parent for p in TESTS.rglob("plugin.py")]
    return sorted(p for p in TESTS.rglob("*.py") if "__pycache__" not in p.parts
                  and not any(p.is_relative_to(folder) for folder in plugins))


def test_every_folder_with_python_is_a_package() -> None:
    folders = {p.parent for p in _sources()}
    missing = sorted(str(f.relative_to(ROOT)) for f in folders if not (f / "__init__.py").exists())
    assert not missing, f"add an __init__.py to: {missing}"


def test_no_helper_is_imported_by_a_bare_name() -> None:
    # Every module of tests/ that is not itself a test: what a bare import would reach.
    helpers = {p.stem for p in _sources()
               if not p.name.startswith("test_") and p.name != "__init__.py"}
    found = []
    for path in [*_sources(), *sorted((ROOT / "bench").glob("*.py"))]:
        for node in ast.walk(parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) and node.module
                     and node.level == 0 else [])
            found += [f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"
                      for name in names if name.split(".")[0] in helpers]
    assert not found, "import these as tests.<module>: " + "; ".join(found)
