"""The operator's settings per plugin: the interface every backend implements.

One row per plugin name holds the settings an operator made through the console, the REST API
or the CLI (grants, config, limits, enabled, MCP exposure) as one JSON object. The storage
keeps the object as given; :mod:`omnicore.plugins.operator` decides what it may hold and how
it layers over the plugin's folder (specs/host.md, "Plugin settings").

Every change takes the next number of one change sequence, in commit order, so an instance
that has seen every change up to ``n`` catches up with :meth:`PluginSettingsRows.changes`
``(since=n)`` and misses none. A cleared plugin keeps its row with an empty object and a new
number, so the others hear of the clearing too.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["PluginSettingsRecord", "PluginSettingsRows"]

#: An edit of one plugin's settings: the current object in, the new one out.
Edit = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class PluginSettingsRecord:
    """One plugin's settings as stored. ``doc`` is empty when they were cleared."""

    plugin: str
    doc: dict[str, Any]
    #: The change sequence number of the last change.
    seq: int
    updated_at: float
    #: Who made the last change (a user name, ``cli``, ``operator``), when known.
    updated_by: str | None


class PluginSettingsRows(abc.ABC):
    """Every plugin's operator settings. Thread-safe; shared by every instance."""

    @abc.abstractmethod
    def get(self, plugin: str) -> PluginSettingsRecord | None:
        """The settings of ``plugin`` (None if it never had any)."""

    @abc.abstractmethod
    def all(self) -> list[PluginSettingsRecord]:
        """Every plugin whose settings are not empty, by name."""

    @abc.abstractmethod
    def change(self, plugin: str, edit: Edit, *, by: str | None,
               at: float) -> PluginSettingsRecord:
        """Replace the settings of ``plugin`` with ``edit(current)`` (``{}`` when it has none)
        in one transaction that no other change of any plugin interleaves with, and give the
        result the next change number. An exception from ``edit`` changes nothing and is
        raised as it is."""

    @abc.abstractmethod
    def changes(self, since: int, limit: int = 1000) -> list[PluginSettingsRecord]:
        """The plugins changed after change number ``since``, oldest change first (cleared
        ones included, with an empty ``doc``)."""

    @abc.abstractmethod
    def last_seq(self) -> int:
        """The number of the latest change (0 before the first)."""
