"""Per-plugin sandbox limits (specs/host.md "Limits")."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from omnicore.errors import ConfigError, InputTooLarge, OutputTooLarge

__all__ = ["ISOLATION_MODES", "Limits"]

_MIB = 2**20

#: ``pooled``: an instance serves call after call (state a call leaves is seen by the next
#: call on it); ``per-call``: every call gets a fresh instance, discarded after it.
ISOLATION_MODES = ("pooled", "per-call")


#: Limits that may be None (off).
_OPTIONAL = frozenset({"fuel", "idle_timeout_ms"})


@dataclass(frozen=True, slots=True)
class Limits:
    """What one plugin may consume. Immutable; derive variants with :meth:`merged`."""

    max_memory_bytes: int = 64 * _MIB
    timeout_ms: int = 1000
    fuel: int | None = None
    max_input_bytes: int = 16 * _MIB
    max_output_bytes: int = 16 * _MIB
    pool_size: int = 4
    #: Elements of one table (funcref slots cost the host 8-16 bytes each and sit outside
    #: linear memory); Go's runtime needs about 6,500.
    max_table_elements: int = 100_000
    #: Tables per instance (several only with the reference-types proposal).
    max_tables: int = 4
    #: Log bytes per second a plugin may write (its log capability and WASI stdout/stderr
    #: together, counted in host memory); the rest is dropped and counted.
    max_log_bytes_per_s: int = _MIB
    #: Log records per second (the same sources): each record costs Python logging and its
    #: handlers far more than its bytes, so tiny lines are bounded by count as well.
    max_log_lines_per_s: int = 500
    #: One of :data:`ISOLATION_MODES`: whether state survives from one call to the next.
    isolation: str = "pooled"
    #: Idle instances are released this long after their last call (None: kept until
    #: unload); the next call then starts a fresh one.
    idle_timeout_ms: int | None = 60_000

    def __post_init__(self) -> None:
        if self.isolation not in ISOLATION_MODES:
            raise ConfigError(
                f"limits.isolation must be one of {', '.join(ISOLATION_MODES)}, got "
                f"{self.isolation!r}", key="limits.isolation", value=self.isolation)
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.name == "isolation" or (field.name in _OPTIONAL and value is None):
                continue
            # bool is an int subclass; `timeout_ms: true` in YAML is a mistake, not 1 ms.
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(
                    f"limits.{field.name} must be a positive integer, got {value!r}",
                    key=f"limits.{field.name}", value=value)
        if self.max_memory_bytes < 65536:
            raise ConfigError(
                "limits.max_memory_bytes must be at least 65536 (one wasm page)",
                key="limits.max_memory_bytes", value=self.max_memory_bytes)

    def input_too_large(self, size: int, who: str, plugin: str, handler: str
                        ) -> InputTooLarge:
        """The error for an input of ``size`` bytes over :attr:`max_input_bytes`; ``who``
        starts the message (``plugin 'p' handler 'h'``)."""
        return InputTooLarge(_over("input", size, who, self.max_input_bytes), plugin=plugin,
                             handler=handler, limit="max_input_bytes",
                             value=self.max_input_bytes)

    def output_too_large(self, size: int, who: str, plugin: str, handler: str
                         ) -> OutputTooLarge:
        """The error for an output of ``size`` bytes over :attr:`max_output_bytes`."""
        return OutputTooLarge(_over("output", size, who, self.max_output_bytes), plugin=plugin,
                              handler=handler, limit="max_output_bytes",
                              value=self.max_output_bytes)

    def merged(self, overrides: Mapping[str, Any] | None) -> Limits:
        """A copy with ``overrides`` applied; unknown keys or bad values raise ConfigError."""
        if not overrides:
            return self
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"limits must be a mapping, got {type(overrides).__name__}",
                              key="limits", value=overrides)
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(str(k) for k in overrides if k not in known)
        if unknown:
            raise ConfigError(
                f"unknown limit(s) {', '.join(unknown)}; known limits: {', '.join(sorted(known))}",
                key=f"limits.{unknown[0]}", value=overrides[unknown[0]])
        return dataclasses.replace(self, **dict(overrides))

    @property
    def per_call(self) -> bool:
        """Whether every call gets a fresh instance (``isolation: per-call``)."""
        return self.isolation == "per-call"

    def as_dict(self) -> dict[str, Any]:
        """The limits as a plain dict (for display and serialisation)."""
        # Every field is a number, a string or None: no deep copy needed (asdict's cost,
        # 45 µs a plugin, made the console's list of 1,000 plugins take 45 ms for this alone).
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _over(kind: str, size: int, who: str, limit: int) -> str:
    return f"{who}: {kind} of {size} bytes exceeds limits.max_{kind}_bytes ({limit})"
