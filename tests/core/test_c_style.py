"""The host's C sources keep the line length ruff holds its Python to (pyproject.toml's
``line-length``): nothing else checks C, and the two languages sit side by side as twins."""

from __future__ import annotations

import tomllib
from pathlib import Path

import omnicore

PKG = Path(omnicore.__file__).parent
ROOT = PKG.parents[1]


def test_no_line_of_the_hosts_c_sources_runs_past_ruffs_line_length() -> None:
    limit = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["line-length"]
    sources = sorted([*PKG.rglob("*.c"), *PKG.rglob("*.h")])
    assert sources, PKG
    long = [f"{path.relative_to(ROOT)}:{number}: {len(line)} columns"
            for path in sources
            for number, line in enumerate(path.read_text().splitlines(), 1)
            if len(line) > limit]
    assert not long, "\n".join(long)
