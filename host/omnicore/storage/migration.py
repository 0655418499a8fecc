"""What a backend's schema migration says to an operator: its steps, its policy, its refusals.

Migrations are expand-then-contract (specs/host.md "Upgrades"), so hosts of two versions can
share one database during a rolling upgrade: a step only adds (a table, a column with a
default, an index, a view that keeps an old name), and a contract step, one that drops or
changes what an older host reads, ships at least one release after the release that stopped
reading it and is marked as such. Each step records the oldest host that can run on the schema
it leaves (:attr:`Step.runs_from`), in the database beside the version, so that a host of an
older release meeting a newer schema can tell whether it may run on it.

A host's version, for its schema, is the schema version it knows (omnicore's package version
is printed beside it; see :func:`host_name`).

``storage.migrate`` chooses what a host does at open with a schema older than it knows
(:data:`Policy`): ``migrate`` applies the pending steps (the default, as always), ``require``
refuses to start and names the command that migrates (``omnicore migrate``), ``inspect``
opens it as found (``omnicore migrate --check``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from omnicore import __version__
from omnicore.storage.errors import SchemaAhead, SchemaBehind

__all__ = ["Pending", "Policy", "Step", "ahead", "behind", "host_name"]

#: What a host does at open with a schema older than it knows (module docstring).
Policy = Literal["migrate", "require", "inspect"]


@dataclass(frozen=True, slots=True)
class Step:
    """One migration step: its SQL, what it does, and the oldest host that runs after it."""

    sql: str
    #: What it does, in one line (``omnicore migrate --check`` lists it).
    what: str
    #: The oldest host (by the schema version it knows) that can run on the schema this step
    #: leaves. An expand step keeps the previous step's; only a contract step raises it.
    runs_from: int
    #: It drops or changes what a host older than :attr:`runs_from` reads: it ships one
    #: release after the release that stopped reading it.
    contract: bool = False


@dataclass(frozen=True, slots=True)
class Pending:
    """A step not yet applied to a database: ``component`` (``schema`` for a backend that
    numbers one schema), the version it leaves, and what it does."""

    component: str
    version: int
    what: str
    contract: bool = False

    def __str__(self) -> str:
        kind = "contract" if self.contract else "expand"
        return f"{self.component} {self.version}: {kind}: {self.what}"


def host_name(knows: int | str) -> str:
    """This host as an operator meets it in a refusal: ``omnicore 0.1.0 (schema 11)``."""
    return f"omnicore {__version__} (schema {knows})"


def behind(location: str, found: str, needs: str) -> SchemaBehind:
    """A host told not to migrate (``storage.migrate: false``) met an older schema."""
    return SchemaBehind(
        f"storage {location}: the schema is at version {found} and {host_name(needs)} needs "
        f"{needs}; storage.migrate is false, so run `omnicore migrate --app APPDIR` (or "
        "--url URL) first", path=location)


def ahead(location: str, found: int, runs_from: int | None, knows: int) -> SchemaAhead:
    """A schema newer than this host knows and not one it can run on (``runs_from``: the
    oldest host the database says can; None: the schema records none)."""
    needs = f", which needs schema {runs_from} or newer" if runs_from is not None else ""
    return SchemaAhead(
        f"storage {location}: the schema is at version {found}{needs}, written by a newer "
        f"omnicore, and {host_name(knows)} knows up to {knows}; upgrade omnicore",
        path=location)

