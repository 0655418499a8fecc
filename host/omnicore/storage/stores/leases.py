"""The leased queue's SQL, once: claim, renew, release and reap over any table of leased rows.

A row is ``queued`` until ``run_at``, then a claim leases it to an owner until
``lease_until`` (``running``) and counts a delivery; the owner renews the lease while it
works and ends it (the row's own store sets the outcome through :meth:`LeasedTable.ended`);
a lease that runs out makes the row claimable again, and a dead owner's leases run out at
once (:func:`release_owners`). The job queue (``jobs``) and the workflow step queue
(``wf_steps``) are both such tables.

A claim is one statement: an expired lease first (a dead host's row), else the oldest due
row; two ordered index probes that each stop at their first row. (One ``WHERE a OR b ...
ORDER BY`` sorted the whole due queue on every claim.) ``COALESCE`` runs the second probe only
when the first finds nothing. Where several hosts claim at once each probe skips the rows
another transaction holds (:attr:`~omnicore.storage.backend.Dialect.skip_locked`).

A table whose rows name where they can run (:attr:`LeasedTable.routed`: a job names its
plugin) is claimed only for the names the claiming host has: a host without a plugin never
leases, and so never spends a delivery of, its work. The due probe then becomes one ordered
probe per name (``UNION ALL`` of each name's first due row, on an index by name and due time,
the earliest of them taken): a seek per plugin the host serves, whatever the queue holds of
other plugins and however long its own backlog. (A filter on the one ordered probe stepped over
every due row of plugins the host lacks — 4-5 ms a claim behind 20,000 of them on SQLite — and
PostgreSQL's planner answered it by sorting the host's own backlog: 9.5 ms a claim behind
20,000.) Past :data:`MAX_PROBES` names the filter rides on the one ordered probe. The
expired-lease probe keeps the filter: leases in force are few.

A row may also name the version it must run on (:attr:`LeasedTable.versioned`: a job's
``digest``, NULL for any). When the claiming host says which version of each name it serves
(``among`` as a mapping name -> digest), a row naming a version is claimed only by a host
serving that one; each name's probe keeps its index seek and filters on the version.
A row may also pin the name and version together (:attr:`LeasedTable.pinned`: a workflow
step's ``name@sha256:<hex>``, NULL for any): such a row is claimed only by a host serving that
name at that version.

In a table where only some rows need a name (:attr:`LeasedTable.anywhere_if_null`: a workflow's
plugin steps name their plugin, its approvals, sleeps, HTTP requests and sub-runs name none),
a row whose routed column is NULL is claimed by any host: the due probes are then one per name
the host serves and one for the rows naming none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omnicore.storage.backend import Backend, Dialect, Tx, marks

__all__ = ["JOBS", "LEASED", "MAX_PROBES", "STEPS", "Among", "LeasedTable", "release_owners"]

#: The most names a due probe seeks one by one (a host serving more filters one scan).
MAX_PROBES = 64
#: The names a claim is limited to (None: any), or each name -> the version it serves.
Among = Sequence[str] | Mapping[str, str | None] | None


def _asks(column: str, values: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    """`` AND`` a row's ``column`` asks for nothing or for one of ``values``, and the
    arguments."""
    if not values:
        return f" AND {column} IS NULL", ()
    return f" AND ({column} IS NULL OR {column} IN ({marks(len(values))}))", values


@dataclass(frozen=True, slots=True)
class LeasedTable:
    """A table of leased rows: its name, the columns that key a row, the column counting
    deliveries, and the queue whose workers a release wakes."""

    table: str
    key: tuple[str, ...]
    attempts: str
    queue: str
    #: The row remembers who ran it: each claim appends its owner to ``runs`` (one runtime
    #: id per delivery, space-separated) and the owner stays once the lease ends, so a
    #: finished row says which host ran it.
    keeps_runner: bool = False
    #: The column naming what a host must have to run the row (a job's plugin), which a claim
    #: can be limited by; None: any host runs any row.
    routed: str | None = None
    #: The column naming the version of ``routed`` a row must run on (NULL: any), which a
    #: claim given each name's version served is limited by; None: rows name no version.
    versioned: str | None = None
    #: The column a row names ``name@version`` in when it must run where that name serves
    #: that version (NULL: no version asked), which a claim given each name's version served
    #: is limited by; None: rows pin nothing.
    pinned: str | None = None
    #: A row whose ``routed`` column is NULL runs on any host (False: every row names one).
    anywhere_if_null: bool = False

    def _row(self, d: Dialect) -> str:
        # One column naming one row, for the claim's sub-selects.
        return self.key[0] if len(self.key) == 1 else d.insertion_order

    def _owned(self) -> str:
        return " AND ".join(f"{k}=?" for k in self.key) + " AND owner=? AND state='running'"

    def only(self, d: Dialect, among: Among) -> tuple[str, tuple[str, ...]]:
        """`` AND ...`` limiting a probe to the rows a host serving ``among`` may run (None:
        no limit), and its arguments: a routed row only for one of those names; with each
        name's version (a mapping), a row naming or pinning a version only when it is the one
        that name serves."""
        if among is None:
            return "", ()
        sql, args = "", ()  # type: tuple[str, tuple[str, ...]]
        if self.routed is not None:
            names = tuple(among)
            r = self.routed
            test = f"{d.no_index}{r} IN ({marks(len(names))})" if names else "1=0"
            sql = f" AND ({r} IS NULL OR {test})" if self.anywhere_if_null else f" AND {test}"
            args = names
        if not isinstance(among, Mapping):
            return sql, args
        pairs = tuple(f"{n}@{v}" for n, v in among.items() if v)
        if self.routed is not None and self.versioned is not None:
            v = self.versioned
            sql += f" AND {v} IS NULL" if not pairs else \
                f" AND ({v} IS NULL OR {self.routed} || '@' || {v} IN ({marks(len(pairs))}))"
            args += pairs
        if self.pinned is not None:
            more, given = _asks(self.pinned, pairs)
            sql, args = sql + more, args + given
        return sql, args

    def claim(self, db: Backend, owner: str, now: float, lease_s: float,
              columns: str, tx: Tx | None = None, among: Among = None) -> Any:
        """Lease the due row to ``owner`` until ``now + lease_s``; its ``columns``, or None.
        In ``tx`` when given (the caller records the claim in the same transaction). With
        ``among`` (a routed table), only a row whose routed column is one of those names (an
        empty list: none); a mapping gives each name's version too (module docstring)."""
        if among is not None and not among and self.routed is not None \
                and not self.anywhere_if_null:
            return None
        d = db.dialect
        row, t = self._row(d), self.table
        only, names = self.only(d, among)
        due, due_args = self.due(d, row, among, now)
        runs = "runs=runs || ? || ' ', " if self.keeps_runner else ""
        sql = (f"UPDATE {t} SET state='running', {self.attempts}={self.attempts}+1, owner=?, "
               f"{runs}lease_until=?, started_at=? WHERE {row}=COALESCE("
               f"(SELECT {row} FROM {t} WHERE state='running' AND lease_until<?{only} "
               f"ORDER BY lease_until LIMIT 1{d.skip_locked}), ({due})) RETURNING {columns}")
        args = (owner, *((owner,) if self.keeps_runner else ()), now + lease_s, now, now,
                *names, *due_args)
        if tx is not None:
            return tx.execute(sql, args).fetchone()
        rows = db.write_one(sql, args, returning=True)[1]
        return rows[0] if rows else None

    def due(self, d: Dialect, column: str, among: Among, now: float
            ) -> tuple[str, tuple[Any, ...]]:
        """The SELECT of the oldest due row's ``column`` (of a name ``among``, when given)
        and its arguments: one ordered probe, or one per name (module docstring)."""
        t = self.table
        if among is None or self.routed is None or len(among) > MAX_PROBES:
            only, names = self.only(d, among)
            return (f"SELECT {column} FROM {t} WHERE state='queued' AND run_at<=?{only} "
                    f"ORDER BY run_at, {column} LIMIT 1{d.skip_locked}", (now, *names))
        key = self._row(d)
        versions = among if isinstance(among, Mapping) else None
        # Each probe: the rows it seeks, and its arguments before the due time.
        seeks: list[tuple[str, tuple[str, ...]]] = []
        for name in among:
            sql, given = f"{self.routed}=?", (name,)  # type: tuple[str, tuple[str, ...]]
            if versions is not None:
                v = versions[name]
                for asked, value in ((self.versioned, v or ""), (self.pinned, f"{name}@{v}")):
                    if asked is not None:
                        more, extra = _asks(asked, (value,) if v else ())
                        sql, given = sql + more, given + extra
            seeks.append((sql, given))
        if self.anywhere_if_null:
            # A row naming no name may still pin one (a step queued before rows named it).
            sql, given = f"{self.routed} IS NULL", ()
            if versions is not None and self.pinned is not None:
                more, given = _asks(self.pinned, tuple(f"{n}@{v}" for n, v in versions.items()
                                                       if v))
                sql += more
            seeks.append((sql, given))
        probes = " UNION ALL ".join(
            f"SELECT * FROM (SELECT {key} AS k, run_at AS r FROM {t} WHERE state='queued' "
            f"AND {sql} AND run_at<=? ORDER BY run_at, {key} LIMIT 1{d.skip_locked}) AS p{i}"
            for i, (sql, _) in enumerate(seeks))
        pick = {key: "k", "run_at": "r"}[column]
        args: tuple[Any, ...] = tuple(a for _, asked in seeks for a in (*asked, now))
        return f"SELECT {pick} FROM ({probes}) AS due ORDER BY r, k LIMIT 1", args

    def renew(self, db: Backend, owner: str, keys: Sequence[Any], until: float) -> None:
        """Extend the leases ``owner`` still holds on the rows of ``keys``."""
        if not keys:
            return
        if len(self.key) == 1:
            db.write_one(f"UPDATE {self.table} SET lease_until=? WHERE owner=? AND "
                         f"state='running' AND {self.key[0]} IN ({marks(len(keys))})",
                         (until, owner, *keys))
            return
        db.write(lambda tx: tx.executemany(
            f"UPDATE {self.table} SET lease_until=? WHERE {self._owned()}",
            [(until, *k, owner) for k in keys]))

    def release(self, db: Backend, owner: str, keys: Sequence[Any]) -> None:
        """Give leases back without counting the delivery (a graceful stop)."""
        if not keys:
            return
        n = self.attempts
        sql = (f"UPDATE {self.table} SET state='queued', {n}={db.dialect.greatest}({n}-1, 0), "
               f"owner=NULL, lease_until=NULL WHERE {self._owned()}")

        def run(tx: Tx) -> None:
            tx.executemany(sql, [((k,) if len(self.key) == 1 else tuple(k)) + (owner,)
                                 for k in keys])
            tx.wake(self.queue)
        db.write(run)

    def release_others(self, db: Backend, owner: str) -> int:
        """Every row leased by anyone but ``owner`` is due again at once (the delivery stays
        counted); how many. Only for a host that knows it is alone."""
        def run(tx: Tx) -> int:
            # A running row without an owner is never leased (a for_each's own step row).
            n = int(tx.execute(f"UPDATE {self.table} SET lease_until=0 WHERE state='running' "
                               f"AND owner IS NOT NULL AND owner <> ?", (owner,)).rowcount)
            if n:
                tx.wake(self.queue)
            return n
        return db.write(run)

    def ended(self, sets: str) -> str:
        """The statement that ends ``owner``'s lease on one row with ``sets`` (``col=?, ...``);
        its arguments: those of ``sets``, then the key's, then the owner."""
        owner = "" if self.keeps_runner else "owner=NULL, "
        return (f"UPDATE {self.table} SET {sets}, {owner}lease_until=NULL "
                f"WHERE {self._owned()}")


#: The job queue.
JOBS = LeasedTable("jobs", ("id",), "attempts", "jobs", keeps_runner=True, routed="plugin",
                   versioned="digest")
#: The workflow step queue.
STEPS = LeasedTable("wf_steps", ("run_id", "step", "idx"), "attempt", "steps", routed="plugin",
                    pinned="pin", anywhere_if_null=True)
#: Every leased table, for :func:`release_owners`.
LEASED = (JOBS, STEPS)


def release_owners(tx: Tx, owners: Sequence[str],
                   tables: Sequence[LeasedTable] = LEASED) -> None:
    """In ``tx``: the leases held by ``owners`` (dead hosts) run out now, on every table."""
    if not owners:
        return
    for t in tables:
        tx.execute(f"UPDATE {t.table} SET lease_until=0 WHERE state='running' AND owner IN "
                   f"({marks(len(owners))})", tuple(owners))
