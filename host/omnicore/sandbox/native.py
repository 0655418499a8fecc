"""Which of two implementations runs where the sandbox has both: a C extension of our own
(built at install, `setup.py`) or its pure-Python fallback. ``OMNICORE_CALLPATH`` chooses for
all of them at once: ``auto`` (C when built), ``native`` (C or refuse to start), ``python``.

An extension that calls wasmtime's C API (``engine=True``: the call path) also needs the
installed wasmtime to be the one it was built for: when :mod:`omnicore.sandbox._wasmtime`
finds another version or a private name missing, it is refused as if it were not built
(``native``: the host refuses to start, naming both versions and the missing names).
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

from omnicore.sandbox._wasmtime import refused

__all__ = ["extension"]


def extension(name: str, what: str, *, engine: bool = False) -> ModuleType | None:
    """The C extension ``omnicore.sandbox.<name>``, or None where the Python code runs."""
    choice = os.environ.get("OMNICORE_CALLPATH", "auto")
    if choice not in ("auto", "native", "python"):
        raise RuntimeError(f"OMNICORE_CALLPATH={choice!r}: use auto, native or python")
    if choice == "python":
        return None
    if engine:
        why = refused("c-extensions")
        if why is not None:
            if choice == "native":
                raise RuntimeError(f"OMNICORE_CALLPATH=native but the {what} is refused: {why}")
            return None
    try:
        return importlib.import_module(f"omnicore.sandbox.{name}")
    except ImportError as exc:
        if choice == "native":
            raise RuntimeError(f"OMNICORE_CALLPATH=native but the {what} is not built "
                               f"({exc}); run scripts/dev setup") from None
        return None
