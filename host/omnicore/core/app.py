"""Old home of :class:`~omnicore.app.OmniApp`, the seed's import path (DESIGN), kept so it works.

The app is the composition root and sits above every layer, so it lives in
:mod:`omnicore.app`. This alias resolves on first use; importing it loads nothing above core.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["OmniApp"]  # noqa: F822 - resolved by __getattr__


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("omnicore.app"), name)
    raise AttributeError(f"module 'omnicore.core.app' has no attribute {name!r}")
