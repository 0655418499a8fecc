"""omnicore: a host runtime for WebAssembly plugins."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["OmniApp", "__version__"]

if TYPE_CHECKING:
    from omnicore.core.app import OmniApp


def __getattr__(name: str) -> Any:
    # Lazy so `import omnicore.errors` (used by every layer) does not pull in the whole core.
    if name == "OmniApp":
        from omnicore.core.app import OmniApp

        return OmniApp
    raise AttributeError(f"module 'omnicore' has no attribute {name!r}")
