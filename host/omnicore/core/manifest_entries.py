"""Lists of entries in a plugin's manifest that name one of its handlers (``schedules``,
``subscriptions``): read the same way by every capability that has them."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from omnicore.errors import ConfigError

__all__ = ["handler_entries"]


class _Entry(Protocol):
    @property
    def handler(self) -> str: ...


E = TypeVar("E", bound=_Entry)


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
