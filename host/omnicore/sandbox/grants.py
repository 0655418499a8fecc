"""Grants: which capabilities an operator gave a plugin, and with what options.

The one home for the grant rules, used by every layer that reads grants (the runtime's
linker, the plugin host's layering, sidecars, the CLI's ``--grant``, the console):

* a grants value is a list of names (``["kv", "omnicore:http"]``) or a mapping of name to
  options (``{"http": {"allow_hosts": [...]}}``); ``true``/``null`` mean "no options" and
  ``false`` revokes what a lower layer granted;
* names are kept without the ``omnicore:`` prefix;
* layers merge lowest first, a later layer's options replace an earlier one's;
* a granted name must be a capability of the registry, and its options pass the
  capability's own ``check_grant``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from omnicore.errors import ConfigError, NeedsGrant

if TYPE_CHECKING:
    from omnicore.sandbox.capability import CapabilityRegistry

__all__ = ["DEFAULT_GRANTS", "GrantLayer", "Grants", "check_requested", "merge", "normalize",
           "of_plugin", "parse_flag", "validate"]

#: One layer of grants: ``{capability: options}``; options ``None`` revoke at this layer.
GrantLayer = dict[str, dict[str, Any] | None]
#: Effective grants: ``{capability: options}``.
Grants = dict[str, dict[str, Any]]

PREFIX = "omnicore:"

# `log` only writes to the plugin's own log, so every plugin has it (specs/abi.md §7).
DEFAULT_GRANTS: GrantLayer = {"log": {}}


def _short(name: str) -> str:
    return name.strip().removeprefix(PREFIX)


def normalize(value: object, *, source: str) -> GrantLayer:
    """Turn a grants value into one layer ``{capability: options | None}``.

    Raises :class:`ConfigError` naming ``source`` for anything that is not a grants value.
    """
    if value is None:
        return {}
    result: GrantLayer = {}
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list | tuple | set | frozenset):
        for item in value:
            if not isinstance(item, str) or not item.strip():
                raise ConfigError(f"{source}: grants must be capability names, got {item!r}",
                                  key="grants", value=item, source=source)
            result[_short(item)] = {}
        return result
    if isinstance(value, Mapping):
        for name, options in value.items():
            if not isinstance(name, str) or not name.strip():
                raise ConfigError(f"{source}: bad capability name {name!r} in grants",
                                  key="grants", value=name, source=source)
            if options is False:
                result[_short(name)] = None
                continue
            if options is None or options is True:
                options = {}
            if not isinstance(options, Mapping):
                raise ConfigError(
                    f"{source}: options of grant '{name}' must be a table/mapping, "
                    f"got {options!r}", key=f"grant.{name}", value=options, source=source)
            result[_short(name)] = dict(options)
        return result
    raise ConfigError(
        f"{source}: grants must be a list of capability names or a mapping of name to "
        f"options, got {type(value).__name__}", key="grants", value=value, source=source)


def merge(*layers: Mapping[str, Mapping[str, Any] | None]) -> Grants:
    """Apply grant layers lowest first: a later layer's options win, ``None`` revokes."""
    merged: Grants = {}
    for layer in layers:
        for name, options in layer.items():
            if options is None:
                merged.pop(name, None)
            else:
                merged[name] = dict(options)
    return merged


def parse_flag(values: tuple[str, ...] | list[str]) -> Grants:
    """``--grant`` values: ``kv`` or ``http={"allow_hosts": ["x"]}`` (options as JSON)."""
    import json

    layer: GrantLayer = {}
    for raw in values:
        name, sep, opts = raw.partition("=")
        options: object = {}
        if sep:
            try:
                options = json.loads(opts)
            except ValueError as exc:
                raise ConfigError(f"options of {name!r} must be a JSON object ({exc})",
                                  key=f"grant.{name}", value=opts, source="--grant") from exc
            if not isinstance(options, dict):
                raise ConfigError(f"options of {name!r} must be a JSON object, got {opts}",
                                  key=f"grant.{name}", value=opts, source="--grant")
        layer.update(normalize({name: options}, source="--grant"))
    return merge(layer)


def of_plugin(plugin: str, grants: object, registry: CapabilityRegistry) -> Grants:
    """The grants a runtime gets for ``plugin`` (a mapping, names or None), normalized,
    merged and checked against ``registry`` (:func:`validate`)."""
    grant_map = merge(normalize(grants, source=f"plugin {plugin!r}"))
    validate(grant_map, registry, plugin)
    return grant_map


def validate(grants: Mapping[str, Mapping[str, Any]], registry: CapabilityRegistry,
             plugin: str) -> None:
    """Every granted name is a capability of ``registry`` and its options pass its check."""
    unknown = sorted(g for g in grants if g not in registry)
    if unknown:
        raise ConfigError(f"plugin {plugin!r}: unknown capability {unknown[0]!r} in grants; "
                          f"this host provides {', '.join(registry.names())}",
                          key=f"plugins.{plugin}.grants", value=unknown[0])
    for name, options in grants.items():
        cap = registry.get(name)
        if cap is not None and cap.check_grant is not None:
            cap.check_grant(options)


def check_requested(plugin: str, requested: frozenset[str], granted: frozenset[str]) -> None:
    """Raise :class:`NeedsGrant` ("needs grant: omnicore:kv") unless every capability the
    plugin requests is granted: a plugin whose request is not granted does not run."""
    missing = tuple(sorted(requested - granted))
    if missing:
        need = ", ".join(PREFIX + m for m in missing)
        raise NeedsGrant(f"plugin {plugin!r} needs grant: {need}; grant it in the "
                         f"sidecar/config (grants = [{', '.join(map(repr, missing))}]) or "
                         f"with --grant", plugin=plugin, missing=missing)
