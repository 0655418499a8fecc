"""What a plugin's SQL statement may be (specs/abi.md §4.10, "Statements"), judged with the
grammar of the server that runs it.

A statement runs on a pooled server session the host keeps for the plugin, with the
authority of the connector's database role. By default a plugin reads and changes rows:
``SELECT`` (not ``INTO``), ``INSERT``, ``UPDATE``, ``DELETE`` (and ``MERGE``, ``REPLACE``,
``WITH`` over them, ``EXPLAIN``, ``SHOW``); inside a transaction the API opened, what ends with
it (savepoints, ``SET LOCAL``, ``LOCK``). Every other kind — schema changes, grants, session
settings, ``COPY``, ``CALL``, ``DO``, cursors, prepared statements — is refused with one line
naming the kind, unless the operator allowed that kind for the connector or the plugin
(:class:`Widening`, ``connectors.<name>.statements``). Calls of functions whose effect
outlives or escapes the statement (session locks, large objects, signals to other backends,
files, settings) are refused wherever they stand in the statement, whatever is widened.

- PostgreSQL: :mod:`~omnicore.egress.db.pgstatements`, the server's own parser (pglast).
- MariaDB/MySQL: :mod:`~omnicore.egress.db.mystatements`, a tokenizer with MariaDB's rules.

The read-only transaction of a ``read_only`` connector and the reset of a connection before
another plugin gets it stay the second line behind this gate.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omnicore.egress.db import mystatements, pgstatements
from omnicore.egress.db.verdict import Verdict
from omnicore.errors import ConfigError

__all__ = ["NO_WIDENING", "Verdict", "Widening", "judge", "refusal", "widening"]

_NEVER = frozenset({"transaction", "begin", "start", "commit", "rollback", "xa", "savepoint",
                    "release"})


@functools.lru_cache(maxsize=1024)  # a plugin's statements are few literals, run again and again
def judge(sql: str, kind: str, in_tx: bool, read_only: bool = False,
          widen: frozenset[str] = frozenset()) -> Verdict:
    """The verdict on the statement ``sql`` of a ``kind`` ("postgres" or "mysql") connector:
    ``in_tx`` inside a transaction the API opened, ``read_only`` for a read-only connector,
    ``widen`` the kinds the operator allowed for this plugin."""
    if kind == "postgres":
        return pgstatements.judge(sql, in_tx, read_only, widen)
    return mystatements.judge(sql, in_tx, read_only, widen)


def refusal(sql: str, kind: str, in_tx: bool, read_only: bool = False,
            widen: frozenset[str] = frozenset()) -> str | None:
    """Why the statement may not run (one line), or None when it may."""
    return judge(sql, kind, in_tx, read_only, widen).reason


@dataclass(frozen=True)
class Widening:
    """The kinds an operator allowed beyond reads and row changes: ``allow`` for every plugin
    of the connector, ``plugins`` per plugin name (``connectors.<name>.statements``)."""

    allow: frozenset[str] = frozenset()
    plugins: tuple[tuple[str, frozenset[str]], ...] = ()
    _by_plugin: dict[str, frozenset[str]] = field(default_factory=dict, compare=False,
                                                  hash=False, repr=False)

    def __post_init__(self) -> None:
        self._by_plugin.update((p, self.allow | kinds) for p, kinds in self.plugins)

    def describe(self) -> dict[str, Any]:
        """As the config writes it (what the console shows and a change's audit records)."""
        return {"allow": sorted(self.allow),
                "plugins": {p: sorted(kinds) for p, kinds in self.plugins}}

    def for_plugin(self, plugin: str) -> frozenset[str]:
        """The kinds ``plugin`` may send beyond the default ones."""
        return self._by_plugin.get(plugin, self.allow)


#: A connector that allows nothing beyond the default kinds.
NO_WIDENING = Widening()


def _kinds(kind: str, value: Any, where: str) -> frozenset[str]:
    if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{where} must be a list of statement kinds", key=where)
    known = pgstatements.kinds() if kind == "postgres" else mystatements.KINDS
    for k in value:
        if k in _NEVER:
            raise ConfigError(f"{where}: {k} statements stay the API's (begin, commit, "
                              "rollback): they cannot be allowed", key=where, value=k)
        if k not in known:
            raise ConfigError(f"{where}: {k!r} is not a {kind} statement kind (a refusal "
                              "names the kind to allow; specs/abi.md §4.10, Statements)",
                              key=where, value=k)
    return frozenset(value)


def widening(kind: str, value: Any, where: str) -> Widening:
    """``connectors.<name>.statements`` of a ``kind`` connector: ``{allow: [kind, ...],
    plugins: {plugin: [kind, ...]}}``; ConfigError names the key."""
    if value is None:
        return NO_WIDENING
    if kind not in ("postgres", "mysql"):
        raise ConfigError(f"{where} is for postgres and mysql connectors", key=where)
    if not isinstance(value, Mapping) or set(value) - {"allow", "plugins"}:
        raise ConfigError(f"{where} takes allow (a list of statement kinds) and plugins "
                          "(a list per plugin name)", key=where)
    allow = _kinds(kind, value.get("allow", []), f"{where}.allow")
    plugins = value.get("plugins", {})
    if not isinstance(plugins, Mapping):
        raise ConfigError(f"{where}.plugins maps plugin names to lists of statement kinds",
                          key=f"{where}.plugins")
    return Widening(allow, tuple((str(p), _kinds(kind, v, f"{where}.plugins.{p}"))
                                 for p, v in sorted(plugins.items())))
