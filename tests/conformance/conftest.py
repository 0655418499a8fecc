"""Builds example plugins once per session with the real toolchains.

Outputs go to build/test-plugins (gitignored) and are rebuilt only when a source changed, so
a second run of the suite does not pay the compile again.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from omnicore.toolchains import build

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"
OUT = ROOT / "build" / "test-plugins"


@pytest.fixture(scope="session")
def example_wasm() -> Callable[[str, str], Path]:
    def _build(example: str, lang: str) -> Path:
        src = PLUGINS / example / lang
        assert src.is_dir(), f"example plugin {example}/{lang} is missing"
        return build(src, OUT)

    return _build
