"""The seams between layers, as Protocols (read by mypy and IDEs; nothing here runs).

Lower layers type what they are handed with these instead of importing the classes above
them: an extension's hooks get a :class:`HostApp`, the plugin host reports into
:class:`HealthChecks`, services that deliver to plugins (jobs, event subscriptions) call them
through a :class:`PluginCaller`. This module names only ``config`` and ``core`` (below it in
specs/host.md's layer table); every class above is reached through a Protocol here, and
mypy checks that the real class (``OmniApp``, ``PluginHost``, ``PluginInfo``,
``ExtensionManager``) matches where the composition root hands it over.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from omnicore.core.manifest_entries import Declaring
from omnicore.core.module import ModuleHost

__all__ = ["Extensions", "HealthChecks", "HostApp", "PluginCaller", "PluginView"]


class HealthChecks(Protocol):
    """Where components register their health checks (``app.health``)."""

    def register_check(self, name: str, check: Callable[[], Any]) -> None: ...

    def unregister_check(self, name: str) -> None: ...


class PluginView(Declaring, Protocol):
    """What a service reads of one plugin (``omnicore.PluginInfo`` implements it): its name,
    and its state, handlers, grants and manifest (:class:`~omnicore.core.manifest_entries.
    Declaring`)."""

    @property
    def name(self) -> str: ...


class PluginCaller(Protocol):
    """How a service reaches plugins (``app.plugins``, an ``omnicore.PluginHost``): list
    them, look one up (``PluginNotFound`` when there is none) and call a handler."""

    def __iter__(self) -> Iterator[PluginView]: ...

    def get(self, name: str) -> PluginView: ...

    def call(self, name: str, handler: str, data: bytes = b"") -> bytes: ...

    def wait_loaded(self, timeout: float | None = None) -> bool:
        """Block until the start's load of plugin files is over (a host serves while its
        folder loads; a file dropped in later is not waited for); False if ``timeout`` ran
        out first."""
        ...


class Extensions(Protocol):
    """What the app's parts read of ``app.extensions`` (``ExtensionManager``)."""

    failures: dict[str, str]

    @property
    def names(self) -> list[str]: ...

    def get(self, name: str) -> Any: ...

    def capabilities(self) -> list[Any]: ...


class HostApp(ModuleHost, Protocol):
    """What a Python host extension sees of the app (``omnicore.OmniApp`` implements it)."""

    @property
    def extensions(self) -> Extensions: ...

    @property
    def plugins(self) -> PluginCaller: ...
