"""The CLI shares rules with the console through the layers below both (accounts, audit:
``omnicore.accounts``), never by importing the console: a command module that reached into
``omnicore.console`` would pull Starlette and the web app into a short command, and tie the
CLI to the console's insides."""

from __future__ import annotations

import ast
from pathlib import Path

import omnicore.cli

CLI = Path(omnicore.cli.__file__).parent
#: `omnicore run` composes a host and serves its console: the one place a surface assembles
#: the other, by its public face only.
COMPOSES = {("app.py", "omnicore.console", "ConsoleModule")}


def _imports(path: Path) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(alias.name, "") for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out += [(node.module, alias.name) for alias in node.names]
    return out


def test_no_cli_module_imports_the_console() -> None:
    found = sorted((path.name, module, name) for path in CLI.glob("*.py")
                   for module, name in _imports(path)
                   if module == "omnicore.console" or module.startswith("omnicore.console.")
                   or (module == "omnicore" and name == "console"))
    assert [f for f in found if f not in COMPOSES] == []
    assert set(found) == COMPOSES  # the exception is still needed, and named exactly


def test_the_scan_sees_imports_inside_functions(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from omnicore.console.users import x\n"
                     "    import omnicore.console\n")
    assert _imports(probe) == [("omnicore.console.users", "x"), ("omnicore.console", "")]
