"""Grant options that are limits: positive integers over a frozen dataclass of defaults.

kv, memory, vectors and tasks read their limits from the grant (and app-wide defaults from
``capabilities.<name>``) by the same rule: unknown keys are refused by name, every value is a
positive integer (``true`` is not 1), and what is not given keeps the default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from omnicore.errors import ConfigError

__all__ = ["positive_ints"]

Q = TypeVar("Q")


def positive_ints(options: Mapping[str, Any], base: Q, where: str,
                  names: Iterable[str] | None = None) -> Q:
    """``base`` (a frozen dataclass) with ``options`` applied; ConfigError naming the key."""
    known = tuple(names) if names is not None else tuple(
        f.name for f in dataclasses.fields(base))  # type: ignore[arg-type]
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(f"unknown option {unknown[0]!r} for {where}; known: "
                          f"{', '.join(known)}", key=f"{where}.{unknown[0]}")
    values = {}
    for name in known:
        value = options.get(name, getattr(base, name))
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(f"{where}.{name} must be a positive integer, got {value!r}",
                              key=f"{where}.{name}", value=value)
        values[name] = value
    return dataclasses.replace(base, **values)  # type: ignore[type-var]
