"""Grant options that are limits: positive integers over a frozen dataclass of defaults.

kv, memory, vectors and tasks read their limits from the grant (and app-wide defaults from
``capabilities.<name>``) by the same rule: unknown keys are refused by name, every value is a
positive integer (``true`` is not 1), and what is not given keeps the default. kv, memory and
vectors declare theirs as one :class:`GrantLimits`, and their capability through it
(:meth:`GrantLimits.declare`): a plugin's state is bound with the limits its grant sets, and
the grant is checked by the same rule before the plugin runs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from omnicore.errors import ConfigError
from omnicore.sandbox.capability import Capability, HostFunction, PluginContext, WitFunction

__all__ = ["GrantLimits", "positive_ints"]

Q = TypeVar("Q")


class Sections(Protocol):
    """An app's ``capabilities`` config (or a plain mapping): the options of one capability."""

    def get(self, name: str, default: Any = None, /) -> Any: ...


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


@dataclass(frozen=True)
class GrantLimits(Generic[Q]):
    """The limits of capability ``capability``: the fields ``names`` (None: all) of ``base``,
    read from its grant over the app-wide defaults in ``capabilities.<capability>``, where
    the keys ``other`` are settings that are not limits."""

    capability: str
    base: Q
    names: tuple[str, ...] | None = None
    other: tuple[str, ...] = ()

    def read(self, options: Mapping[str, Any], base: Q | None = None) -> Q:
        """``base`` (default: :attr:`base`) with grant ``options`` applied; ConfigError naming
        the ``grant.<capability>`` key."""
        return positive_ints(options, self.base if base is None else base,
                             f"grant.{self.capability}", self.names)

    def check_grant(self, options: Mapping[str, Any]) -> None:
        """The capability's ``check_grant``."""
        self.read(options)

    def declare(self, state: Callable[[PluginContext, Q], Any], defaults: Q | None = None, *,
                description: str, functions: Sequence[HostFunction],
                wit: Sequence[WitFunction] = ()) -> Capability:
        """Capability ``omnicore:<capability>``, whose per-plugin state is ``state(ctx,
        limits)`` with the limits the plugin's grant sets over ``defaults`` (None:
        :attr:`base`); :meth:`check_grant` checks a grant."""
        def bind(ctx: PluginContext) -> Any:
            return state(ctx, self.read(ctx.grant, defaults))

        return Capability(name=self.capability, description=description, functions=functions,
                          bind=bind, check_grant=self.check_grant, wit=wit)

    def app_defaults(self, capabilities: Sections) -> Q:
        """The defaults an app's ``capabilities`` section sets; ConfigError naming the
        ``capabilities.<capability>`` key."""
        options = {key: value for key, value in capabilities.get(self.capability, {}).items()
                   if key not in self.other}
        return positive_ints(options, self.base, f"capabilities.{self.capability}", self.names)
