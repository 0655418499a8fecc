"""Which of two implementations runs where the sandbox has both: a C extension of our own
(built at install, `setup.py`) or its pure-Python fallback. ``OMNICORE_CALLPATH`` chooses for
all of them at once: ``auto`` (C when built), ``native`` (C or refuse to start), ``python``."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["extension"]


def extension(name: str, what: str) -> ModuleType | None:
    """The C extension ``omnicore.sandbox.<name>``, or None where the Python code runs."""
    choice = os.environ.get("OMNICORE_CALLPATH", "auto")
    if choice not in ("auto", "native", "python"):
        raise RuntimeError(f"OMNICORE_CALLPATH={choice!r}: use auto, native or python")
    if choice == "python":
        return None
    try:
        return importlib.import_module(f"omnicore.sandbox.{name}")
    except ImportError as exc:
        if choice == "native":
            raise RuntimeError(f"OMNICORE_CALLPATH=native but the {what} is not built "
                               f"({exc}); run scripts/dev setup") from None
        return None
