"""Lists of entries in a plugin's manifest that name one of its handlers (``schedules``,
``subscriptions``): read the same way by every capability that has them, and in force only
while the plugin is loaded and granted the capability that runs them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from omnicore.errors import ConfigError, PluginNotFound
from omnicore.logging import BoundLogger

__all__ = ["Declaring", "granted_entries", "handler_entries"]


class _Entry(Protocol):
    @property
    def handler(self) -> str: ...


E = TypeVar("E", bound=_Entry)


class Declaring(Protocol):
    """What a plugin declares and was granted (:class:`omnicore.types.PluginView` adds its
    name)."""

    @property
    def state(self) -> str: ...

    @property
    def handlers(self) -> Sequence[str]: ...

    @property
    def granted(self) -> Mapping[str, Mapping[str, Any]]: ...

    @property
    def manifest(self) -> Mapping[str, Any]: ...


def handler_entries(manifest: Mapping[str, Any], key: str,
                    parse: Callable[[Any, str], E], handlers: Sequence[str] = ()) -> list[E]:
    """``manifest[key]`` parsed entry by entry; ConfigError names the first bad one, and an
    entry naming a handler the plugin lacks (when ``handlers`` is given)."""
    raw = manifest.get(key) or []
    found = []
    for i, item in enumerate(raw if isinstance(raw, list) else [raw]):
        where = f"manifest {key}[{i}]"
        entry = parse(item, where)
        if handlers and entry.handler not in handlers:
            raise ConfigError(f"{where}: no handler {entry.handler!r} (handlers: "
                              f"{', '.join(handlers)})", key=f"{where}.handler")
        found.append(entry)
    return found


def granted_entries(lookup: Callable[[str], Declaring], plugin: str, key: str, grant: str,
                    read: Callable[[str, Mapping[str, Any], Sequence[str]], list[E]],
                    log: BoundLogger, *, ungranted: str, broken: str) -> list[E]:
    """The entries under ``key`` of ``plugin``'s manifest (``read(plugin, manifest,
    handlers)``) while it is loaded and granted ``grant``; else none. A plugin that declares
    entries without the grant is told so on ``log`` (``ungranted``), as is a bad entry that a
    host built without the manifest checks loaded (``broken``)."""
    try:
        view = lookup(plugin)
    except PluginNotFound:
        return []
    if view.state != "loaded" or not view.manifest.get(key):
        return []
    if grant not in view.granted:
        log.warning("plugin '%s' %s", plugin, ungranted)
        return []
    try:
        return read(plugin, view.manifest, view.handlers)
    except ConfigError as exc:
        log.error("plugin '%s' %s; %s", plugin, exc, broken)
        return []
