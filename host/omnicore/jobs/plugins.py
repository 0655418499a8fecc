"""What the job service needs of the plugin host (``app.plugins`` implements it): the seam
``app.py`` hands the service, so ``jobs/`` never imports the plugin host above it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

__all__ = ["JobPlugins", "PluginView"]


class PluginView(Protocol):
    """What the service reads of one plugin (``PluginInfo``)."""

    @property
    def name(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def handlers(self) -> tuple[str, ...]: ...

    @property
    def granted(self) -> Mapping[str, Any]: ...

    @property
    def manifest(self) -> Mapping[str, Any]: ...


class JobPlugins(Protocol):
    """The plugins a job calls."""

    def __contains__(self, name: object) -> bool: ...

    def __iter__(self) -> Iterator[PluginView]: ...

    def get(self, name: str) -> PluginView:
        """The plugin named ``name``; PluginNotFound if there is none."""

    def call(self, name: str, handler: str, data: bytes = b"") -> bytes:
        """Run ``handler`` of ``name`` (the plugin's deadline holds)."""

    def interrupt(self) -> None:
        """End every plugin call running now: the last step of a stop whose grace is over."""
