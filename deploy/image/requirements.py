"""Print the requirements of omnicore's ``pyproject.toml`` and of the extras named, one a line.

    python3 deploy/image/requirements.py pyproject.toml postgres connectors

The image installs them in a layer of their own before it copies the host's code (Dockerfile,
build stage), so a change to the code rebuilds only the step that installs omnicore itself:
the dependencies, among them hnswlib compiled from its sdist with g++ (no wheel for Linux on
x86-64), are not fetched and built again for every commit. The standard library only: it runs
on the image's base Python, before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

__all__ = ["requirements"]


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    """The project's dependencies and its ``extras``' (an extra naming this project's other
    extras, ``omnicore[postgres]``, is followed), each once, in the order first named."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    itself = re.compile(rf"^{re.escape(project['name'])}\s*\[([^\]]+)\]\s*$", re.IGNORECASE)
    found = list(project.get("dependencies", []))
    todo, seen = list(extras), set()
    while todo:
        extra = todo.pop(0).strip()
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"{pyproject} has no extra '{extra}' (it has: "
                             f"{', '.join(sorted(optional)) or 'none'})")
        seen.add(extra)
        for requirement in optional[extra]:
            named = itself.match(requirement)
            if named:
                todo.extend(named.group(1).split(","))
            else:
                found.append(requirement)
    return list(dict.fromkeys(found))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit("usage: requirements.py PYPROJECT [EXTRA ...]")
    print("\n".join(requirements(Path(sys.argv[1]), sys.argv[2:])))
