"""The seam between the stores and a database: what SQLite and PostgreSQL do differently.

Every store (``storage/stores/``) is written once over a :class:`Backend`: its SQL uses ``?``
placeholders and the fragments of :class:`Dialect`; it runs statements through
:meth:`Backend.read`, :meth:`Backend.write_one` and :meth:`Backend.write` (a transaction
handed to it as a :class:`Tx`), and it never sees a driver, a pool or a lock. A backend
carries only what truly differs between databases (model: procrastinate's ``connector.py``):

* connections and transactions: SQLite one connection behind a lock, writes in ``BEGIN
  IMMEDIATE``; PostgreSQL a pool, autocommit reads, a retry on a connection the server closed;
* placeholders (``?`` is rewritten to ``%s`` for psycopg) and error mapping (every driver
  error becomes a :class:`~omnicore.storage.errors.StorageError` naming the database);
* claiming: ``FOR UPDATE SKIP LOCKED`` where several hosts claim at once, nothing where one
  writer holds the file (:attr:`Dialect.skip_locked`), and :meth:`Tx.lock` for the
  read-then-write rules (quotas) a single writer gets for free;
* wake-ups: :meth:`Tx.wake` (``LISTEN/NOTIFY``, or SQLite's wake-up socket after commit) and
  :meth:`Tx.announce` for what only other hosts need to hear (events, settings);
* per-store schema: :meth:`Backend.prepare` brings a component's tables up to date (SQLite
  migrates each component when first used; PostgreSQL migrates everything at open), and
  :meth:`Backend.pending` / :meth:`Backend.migrate` list and apply what is left for
  ``omnicore migrate`` (expand-then-contract: omnicore.storage.migration).
* full-text search: :meth:`Backend.text_index` (FTS5 tables per owner, or a ``tsvector``
  column); JSON metadata filters: :attr:`Dialect.json_filter`;
* liveness: :attr:`Backend.presence`, what proves a host alive besides its heartbeat (a
  session lock several hosts can see, or nothing where one host holds the file).

A new backend is a dialect and a connection: implement :class:`Backend` and :class:`Tx`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from omnicore.storage.migration import Pending

__all__ = ["Backend", "Cursor", "Dialect", "Presence", "TextIndex", "Tx", "bounded_delete",
           "marks", "where"]

T = TypeVar("T")


class Cursor(Protocol):
    """What a statement run in a transaction answers (a DB-API cursor)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Tx(Protocol):
    """One write transaction: everything done through it commits together or not at all."""

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Cursor: ...

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> Any: ...

    def lock(self, key: str) -> None:
        """Serialise the transactions that lock ``key`` until this one ends (a quota check
        then cannot be passed by two writers that each saw room). A single writer: no-op."""

    def wake(self, queue: str) -> None:
        """Wake the idle workers of ``queue`` (``"jobs"``; ``""`` every queue) on every host
        once this transaction commits."""

    def announce(self, channel: str, payload: str) -> None:
        """Tell the other hosts sharing the database (``"events"``: an event id,
        ``"settings"``: a change number) at commit; a backend no other host shares: no-op."""


@dataclass(frozen=True, slots=True)
class Dialect:
    """The SQL fragments that differ between databases; stores write everything else once."""

    name: str
    #: One writer at a time holds the whole database (SQLite): a statement that reads and
    #: then writes needs no lock to be atomic.
    single_writer: bool
    #: Appended to the sub-select that picks a row to lease (claims by several hosts).
    skip_locked: str
    #: Appended to a SELECT whose rows the transaction then changes.
    for_update: str
    #: Null-safe equality (``a IS b`` in SQLite).
    same: str
    #: The larger of two values (SQLite's two-argument ``MAX``).
    greatest: str
    #: The column that keeps the order rows were inserted in, in a table keyed otherwise.
    insertion_order: str
    #: ``json_filter(column, [(key, value), ...])``: `` AND ...`` conditions that the JSON text
    #: ``column`` holds ``value`` at each top-level ``key``, compared as SQLite's
    #: ``json_extract`` compares (a string as text, a number as a number, true/false as
    #: 1/0), and their arguments. The keys were checked by the caller (no ``"``).
    json_filter: Callable[[str, Sequence[tuple[str, Any]]], tuple[str, list[Any]]]
    #: Put before a column in a WHERE term to keep the planner off that column's index when
    #: another term finds the rows (SQLite's unary ``+``); empty where no hint is needed.
    no_index: str


def marks(n: int) -> str:
    """``?,?,...`` for an ``IN (...)`` list of ``n`` values."""
    return ",".join("?" * n)


def where(**columns: Any) -> tuple[str, list[Any]]:
    """`` WHERE a=? AND b IN (?,...)`` over the columns given a value (a list or tuple: any of
    its items; None or empty: no condition), and its arguments; ``""`` when there are none."""
    terms: list[str] = []
    args: list[Any] = []
    for column, value in columns.items():
        if value is None or (isinstance(value, list | tuple) and not value):
            continue
        if isinstance(value, list | tuple):
            terms.append(f"{column} IN ({marks(len(value))})")
            args += value
        else:
            terms.append(f"{column}=?")
            args.append(value)
    return (" WHERE " + " AND ".join(terms)) if terms else "", args


def bounded_delete(table: str, key: str, condition: str, args: Sequence[Any],
                   limit: int | None) -> tuple[str, list[Any]]:
    """The DELETE of ``table``'s rows where ``condition`` holds, the oldest first by its
    integer ``key`` and at most ``limit`` of them (None: all), and its arguments: a purge
    in batches, so a huge table never holds one long transaction."""
    if limit is None:
        return f"DELETE FROM {table} WHERE {condition}", list(args)
    return (f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE "
            f"{condition} ORDER BY {key} LIMIT ?)", [*args, limit])


class TextIndex(abc.ABC):
    """Full-text search over the ``text`` column of one table whose rows each belong to an
    owner (a plugin): a search sees only its owner's rows, and their ranking counts only
    them. SQLite keeps an FTS5 table per owner beside the rows (BM25); PostgreSQL a generated
    ``tsvector`` column under a GIN index (``ts_rank``)."""

    def columns(self, owner: str) -> dict[str, Any]:
        """What a new row of ``owner`` must hold for the index besides its text."""
        return {}

    def added(self, tx: Tx, owner: str, rowid: int, text: str) -> None:
        """In ``tx``: index the row just inserted (nothing where the database does it)."""
        return None

    def removed(self, tx: Tx, rows: Sequence[tuple[str, int, str]]) -> None:
        """In ``tx``: forget the rows ``(owner, id, text)`` just deleted."""
        return None

    @abc.abstractmethod
    def search(self, owner: str, words: Sequence[str], columns: str, keep: str,
               args: Sequence[Any], limit: int, *, filtered: bool) -> list[tuple[Any, float]]:
        """Up to ``limit`` of ``owner``'s rows that hold any of ``words``, best first: the
        ``columns`` (of the table aliased ``m``) of the rows where `` AND``-led ``keep``
        holds with ``args``, each with a relevance >= 0 on BM25's scale (about 1 for one word
        matched in a short text). ``filtered``: ``keep`` rejects most rows (a metadata
        filter), so ranking the matches before testing it gains nothing."""


class Presence:
    """What proves a registered host alive besides its heartbeat. This default, for a database
    one host holds at a time (SQLite's data dir lock): the heartbeat alone."""

    #: The columns a registration adds to the host's row of ``instances``.
    columns: tuple[str, ...] = ()

    def claim(self, db: Backend, runtime_id: str) -> list[Any]:
        """Before ``runtime_id``'s row is written: hold the proof of its liveness and give
        the row's values of :attr:`columns`. Held first, so no reaper ever sees the row
        without it (a row whose proof is missing is dead); raise StorageError if it can't be
        held. A registration again of the same host proves it with what it holds already."""
        return []

    def removed(self) -> None:
        """The host's row went (a clean stop)."""
        return None

    def dead(self, now: float, dead_after_s: float) -> tuple[str, list[Any]]:
        """`` OR ...``: a further proof that a row of ``instances`` is dead, and its args."""
        return "", []


class Backend(abc.ABC):
    """A database the stores run on: a :class:`Dialect` and a connection."""

    #: The database for errors and logs (a file path, or a URL with its password masked).
    location: str
    dialect: Dialect
    #: The schema version this omnicore knows (its migrations' count; the core schema's on
    #: SQLite, whose other stores number their own).
    latest_schema: int

    @abc.abstractmethod
    def read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """The rows of one statement, outside any transaction."""

    def read_value(self, sql: str, args: Sequence[Any] = (),
                   cache_key: tuple[str, str] | None = None) -> Any:
        """The first column of the first row of ``sql`` (None: no row). With ``cache_key`` a
        backend may answer from a cache it keeps exact (SQLite: until the next commit)."""
        rows = self.read(sql, args)
        return rows[0][0] if rows else None

    def read_row(self, make: Callable[[Any], T], sql: str, args: Sequence[Any] = ()) -> T | None:
        """``make`` of the first row of ``sql`` (None: no row): a store's row by its key."""
        rows = self.read(sql, args)
        return make(rows[0]) if rows else None

    @abc.abstractmethod
    def write(self, fn: Callable[[Tx], T]) -> T:
        """Run ``fn`` in one write transaction; what it returns. An exception rolls it back."""

    @abc.abstractmethod
    def write_one(self, sql: str, args: Sequence[Any] = (), *, returning: bool = False,
                  wake: str | None = None) -> tuple[int, list[Any]]:
        """One statement, atomic on its own (one round trip where :meth:`write` takes three):
        how many rows it changed and, if ``returning``, the rows it returned. ``wake`` wakes
        that queue's workers once it committed (a statement that returned no row wakes no
        one)."""

    @abc.abstractmethod
    def pending(self) -> list[Pending]:
        """The migration steps this omnicore would apply to the database, oldest first."""

    @abc.abstractmethod
    def migrate(self) -> list[Pending]:
        """Apply every pending step (``omnicore migrate``); the steps applied."""

    @abc.abstractmethod
    def prepare(self, component: str) -> None:
        """Make sure ``component``'s tables exist at this omnicore's version (idempotent)."""

    #: How hosts sharing this database prove themselves alive (the instance table's reap).
    presence: Presence = Presence()

    @abc.abstractmethod
    def has_table(self, name: str) -> bool:
        """Whether the table ``name`` exists (a component SQLite migrates on first use may not
        have been used yet)."""

    @abc.abstractmethod
    def text_index(self, table: str, owner: str) -> TextIndex:
        """Full-text search over ``table``'s ``text``, each row owned by its ``owner`` column."""

    @abc.abstractmethod
    def on_wakeup(self, callback: Callable[[], None], queue: str | None = None) -> None:
        """Call ``callback`` when work is added to ``queue`` (None: any) by another process."""

    @abc.abstractmethod
    def close(self) -> None: ...
