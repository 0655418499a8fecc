"""What the job service needs of the plugin host (``app.plugins`` implements it): the seam
``app.py`` hands the service, so ``jobs/`` never imports the plugin host above it."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from omnicore.types import PluginCaller

__all__ = ["JobPlugins"]


class JobPlugins(PluginCaller, Protocol):
    """The plugins a job calls: a :class:`~omnicore.types.PluginCaller` that also answers
    membership, says which plugins it serves, and can cut every running call short."""

    def __contains__(self, name: object) -> bool: ...

    def interrupt(self) -> None:
        """End every plugin call running now: the last step of a stop whose grace is over."""

    def serving(self) -> Sequence[str]:
        """The plugins whose calls run here now: the only ones this host claims jobs of."""

    def serving_digests(self) -> Mapping[str, str | None]:
        """:meth:`serving`, each with the digest (``sha256:<hex>``) of the module serving it:
        a job that asks for a version is claimed only where that one serves."""
