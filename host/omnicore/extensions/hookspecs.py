"""The hooks a Python host extension may implement (pluggy project ``omnicore``).

An extension is any object or module with methods of these names; no decorator is needed.
Each hook's docstring is its documentation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from omnicore.sandbox.capability import Capability, DeferredCapability
    from omnicore.types import HostApp

__all__ = ["HOOK_NAMES", "PROJECT", "hookimpl", "hookspec"]

PROJECT = "omnicore"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(historic=True)
def register(app: HostApp) -> None:
    """Called once when the extension is loaded: attach things to ``app`` (modules, checks)."""


@hookspec
def startup(app: HostApp) -> None:
    """Called after the app's modules started, on a worker thread (not the event loop): begin
    work; blocking here (loading plugins) does not stop started modules from serving."""


@hookspec
def shutdown(app: HostApp) -> None:
    """Called before the app's modules stop: end work."""


@hookspec
def capabilities(app: HostApp) -> list[Capability | DeferredCapability]:
    """Return host capabilities (``omnicore.sandbox.capability.Capability``) to offer plugins,
    or ``DeferredCapability``s whose module is imported when a plugin first needs it."""
    raise NotImplementedError


HOOK_NAMES = ("register", "startup", "shutdown", "capabilities")
