"""The SQL connectors' shared part (specs/abi.md §4.10): a backend per connector over its
pool, the request shape, transactions, and the JSON of a result; ``postgres.py`` and
``mysql.py`` each supply a dialect (connecting, running one statement, naming failures).
"""

from __future__ import annotations

import io
import json
import logging
import threading
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any, Generic, TypeVar

import orjson

from omnicore.egress.db.base import (
    CLIENT_GRACE_S,
    MIN_STATEMENT_MS,
    Pool,
    connection_target,
    first_line,
    map_large_allocations,
    over_cap,
    timed_out,
)
from omnicore.egress.db.config import DbConnector, Target
from omnicore.egress.db.statements import judge
from omnicore.egress.db.values import params
from omnicore.egress.redact import Redactor
from omnicore.egress.refused import Refused

__all__ = ["Dialect", "DriverConn", "RowEncoder", "SqlBackend", "dump", "row_encoder"]

_log = logging.getLogger("omnicore.egress")

_MAX_SQL = 1 << 20
#: The size of a result's JSON past which it is written into one buffer (_statement).
_SPILL = 1 << 20


def _spill(out: io.BytesIO | None, columns: bytes, pieces: list[bytes]) -> io.BytesIO:
    """``pieces`` (rows' JSON) written into ``out`` (made, its start written, when None)
    and cleared: a result past _SPILL bytes is written into one buffer as its rows come."""
    if out is None:
        out = io.BytesIO()
        out.write(b'{"columns":' + columns + b',"rows":[')
    else:
        out.write(b",")
    out.write(b",".join(pieces))  # (one piece: written as it is, not copied)
    pieces.clear()
    return out


def dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


#: A row as the JSON text of its array.
RowEncoder = Callable[[Sequence[Any]], bytes]
#: The encoder of rows whose cells are JSON data as they come (:func:`row_encoder`).
PLAIN: RowEncoder = orjson.dumps


def row_encoder(convert: Sequence[Callable[[Any], Any] | None]) -> RowEncoder:
    """The encoder of rows whose cells become JSON data by ``convert`` (``None``: the cell
    is JSON data as it comes: null, bool, int or text). orjson writes the array (a tenth of
    :mod:`json`'s time on a short row); what it refuses (an integer past 64 bits inside a
    JSON document) goes to :func:`dump`. Rows that need no conversion are written by
    :data:`PLAIN`, orjson's own function (a frame less per row), whose caller writes what it
    refuses with :func:`dump` (:meth:`SqlBackend._statement`)."""
    if all(f is None for f in convert):
        return PLAIN
    fs = list(convert)

    def converted(row: Sequence[Any]) -> bytes:
        cells = [v if f is None else f(v) for f, v in zip(fs, row, strict=True)]
        try:
            return orjson.dumps(cells)
        except TypeError:
            return dump(cells).encode()

    return converted


RawT = TypeVar("RawT")


class DriverConn(Generic[RawT]):
    """A pooled connection of a dialect: the driver's ``raw`` one, whether it broke, the
    connector's statement_timeout_ms, the plugin it last served (``owner``, the pool's) and
    whether the watchdog cut it (``killed``: what failed on it then failed by the deadline)."""

    __slots__ = ("broken", "dirty", "group", "heavy", "killed", "limit_ms", "owner", "raw")

    def __init__(self, raw: RawT, limit_ms: int) -> None:
        self.raw = raw
        self.broken = False
        self.killed = False
        self.limit_ms = limit_ms
        self.owner: str | None = None
        self.group: str | None = None  # the credentials it logged in with (the pool's)
        # A statement of the open transaction may have left state past the call (clean()
        # at its end).
        self.dirty = False
        # It may hold what only the session's end clears cheaply (temporary tables, a
        # role): it serves only its plugin, and is closed rather than reset for another.
        self.heavy = False

    def close(self) -> None:
        # A connection that broke may fail to close as well: it is dropped either way.
        try:
            self.close_raw()
        except Exception:
            pass

    def close_raw(self) -> None:
        raise NotImplementedError


class Dialect:
    """What differs between PostgreSQL and MySQL. ``conn`` objects are the dialect's own
    (with a ``broken`` flag the pool reads)."""

    #: What to look at when the server refused the privileges check (a refusal's advice).
    unchecked_hint = "look at the role's settings (ALTER ROLE ... RESET ALL)"

    def answered(self, exc: BaseException) -> bool:
        """Whether ``exc`` is the server's own error (it refused or cancelled the statement),
        not a failure to read its answer: a privileges check the server refused refuses the
        connection under ``privileges: refuse``/``strict`` (the check reads what every role
        may read: PostgreSQL's views, MariaDB's SHOW GRANTS of the account and of each role,
        enabled for it)."""
        return bool(getattr(exc, "sqlstate", None))

    def connect(self, target: Target, connector: DbConnector, deadline: float) -> Any:
        raise NotImplementedError

    def rows(self, conn: Any, sql: str, args: list[Any], deadline: float
             ) -> tuple[bytes, Generator[Sequence[Any], None, None], RowEncoder]:
        """Run a query: the JSON of its columns (``[{"name", "type"}]``), a generator of
        its rows (read from the server as they are iterated; closing it early ends the
        query) and the encoder of a row."""
        raise NotImplementedError

    def execute(self, conn: Any, sql: str, args: list[Any], deadline: float
                ) -> dict[str, Any]:
        raise NotImplementedError

    def begin(self, conn: Any, read_only: bool, deadline: float) -> None:
        raise NotImplementedError

    def end(self, conn: Any, commit: bool, deadline: float) -> None:
        raise NotImplementedError

    def reset(self, conn: Any, deadline: float) -> None:
        """Bring ``conn`` back to the session a new connection has, confirmed by the server
        (it is about to serve another plugin); raise when it cannot (the pool closes it)."""
        raise NotImplementedError

    def writable(self, conn: Any) -> str | None:
        """What the connection's role may write (a read_only connector's check), or None."""
        raise NotImplementedError

    def privileges(self, conn: Any, deadline: float) -> tuple[list[str], list[str]]:
        """What the connection's role may do beyond a plugin's data: its powers over the
        server (other roles, databases, files, sessions) and what it owns (tables, schemas,
        the database: a plugin could ALTER or DROP them). Bounded by ``deadline``."""
        raise NotImplementedError

    def leaves(self, sql: str) -> bool:
        """Whether statement ``sql`` may leave state on the session past the call
        (:mod:`omnicore.egress.db.lifetime`): then :meth:`clean` runs when it is given back."""
        raise NotImplementedError

    def clean(self, conn: Any, deadline: float) -> bool:
        """End what a plugin's statements may have left on ``conn`` that would outlive its
        call and hold up a neighbour (session locks, a prepared transaction), bounded by the
        plugin's ``deadline``; raise when it cannot (the connection is closed). Whether the
        session may still hold what only its end clears cheaply (temporary tables: dropping
        3,000 takes seconds): then it is never handed to another plugin (the pool closes it
        and opens a new one, so the next plugin's deadline never pays for the drop)."""
        raise NotImplementedError

    def in_transaction(self, conn: Any) -> bool:
        """Whether ``conn`` is inside a transaction (known without a round trip): after a
        statement outside the API's transactions, the plugin opened one behind the API."""
        raise NotImplementedError

    def failure(self, exc: BaseException, connector: str, redactor: Redactor
                ) -> Refused | None:
        """The one-line Refused for a driver's exception (None: not the driver's)."""
        raise NotImplementedError

    def lost(self, exc: BaseException) -> bool:
        """Whether ``exc`` says the connection was gone before the statement ran."""
        raise NotImplementedError

    def closed(self, conn: Any) -> bool:
        """Whether the driver closed ``conn`` as a statement failed (it cannot go back to the
        pool)."""
        return False


class SqlBackend:
    """One SQL connector: its pool (shared by every plugin granted it), its dialect, its
    transactions per plugin and its last error (for the console)."""

    def __init__(self, connector: DbConnector, dialect: Dialect,
                 read_secret: Callable[[str], bytes | None]) -> None:
        map_large_allocations()  # (what a result frees given back, not kept: base.py)
        self.connector = connector
        self.name = connector.name
        self.dialect = dialect
        self._read_secret = read_secret
        self.redactor = Redactor()
        # A plugin with a role of its own (connectors.<name>.plugins) has connections of
        # its own: they never pass to another plugin.
        roles = connector.plugin_roles
        self.pool = Pool(connector.name, connector.pool_size, self._connect,
                         reset=dialect.reset,
                         group=lambda plugin: plugin if plugin in roles else None)
        self._checked: set[str | None] = set()  # roles whose privileges were checked
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self._lock = threading.Lock()
        # Connections a plugin holds in transactions: at most half the pool (at least one),
        # so a plugin opening transactions from many calls cannot starve the others.
        self._held: dict[str, int] = {}
        self.max_held = max(1, connector.pool_size // 2)
        # The roles of a read_only connector whose write privileges were read (each role's:
        # a plugin's own role can write when the connector's cannot).
        self._write_checked: set[str | None] = set()

    # -- connections -------------------------------------------------------------------------
    def reserve(self, plugin: str) -> None:
        """Owe ``plugin`` a connection of the pool (it was granted the connector)."""
        self.pool.reserve(plugin)

    def _connect(self, deadline: float, plugin: str | None = None) -> Any:
        target = connection_target(self.connector, self._read_secret, plugin)
        for secret in (target.password, target.user and target.password and
                       f"{target.user}:{target.password}"):
            if secret:
                self.redactor.add(secret)
        conn = self.dialect.connect(target, self.connector, deadline)
        # At every new connection, not once per role: a role made superuser (or given
        # CREATEROLE, ...) after its first connection was otherwise never refused (one query
        # per connection opened; a pooled connection pays nothing).
        try:
            self._check_role(conn, target.user, deadline)
        except BaseException:
            conn.close()
            raise
        if self.connector.read_only and target.user not in self._write_checked:
            self._write_checked.add(target.user)
            try:
                why = self.dialect.writable(conn)
            except Exception as exc:  # a check, not a reason to refuse the connection
                why = f"could not be checked ({type(exc).__name__})"
            if why:
                _log.warning("connector %s is read_only but its role %s can write (%s): the "
                             "host keeps every statement in a read-only transaction; give it "
                             "a role with SELECT only as well (specs/abi.md §4.10, Read-only)",
                             self.name, target.user, why)
        return conn

    def _check_role(self, conn: Any, user: str | None, deadline: float) -> None:
        """The role's privileges, at its first connection (specs/abi.md §4.12,
        ``privileges``): powers over the server are refused (``refuse``, the default, and
        ``strict``) or logged (``warn``); what it owns is logged (refused with ``strict``)."""
        mode = self.connector.privileges
        try:
            powers, owns = self.dialect.privileges(conn, deadline)
        except Exception as exc:
            if conn.broken or conn.killed or self.dialect.closed(conn):
                raise self._fail(exc, conn) from None
            why = (f"connector {self.name}: the privileges of role {user} could not be "
                   f"checked ({type(exc).__name__})")
            if mode != "warn" and self.dialect.answered(exc):
                # Fail closed when the server refused or cancelled the check: a superuser
                # role whose own statement_timeout (1 ms) cancelled it was let in unchecked,
                # with a warning only. (A server that answers the check in no shape the
                # driver reads, a spoofed one, is warned of: its word proves nothing.)
                raise Refused("DENIED", f"{why}: {error_line(exc, self.redactor)}; "
                                        f"{self.dialect.unchecked_hint}, or set "
                                        f"connectors.{self.name}.privileges: warn") from None
            if user not in self._checked:
                _log.warning("%s (connectors.%s.privileges: warn)", why, self.name)
            self._checked.add(user)
            return
        name = self.name
        first = user not in self._checked  # warnings once per role, refusals every time
        if powers:
            why = (f"connector {name}: role {user} has {', '.join(powers)}: with it a plugin's "
                   "statement reaches past this connector's data (other roles, databases, "
                   "the server's files or sessions); give the connector a role without it "
                   "(docs/guides/databases.md, One role per plugin)")
            if mode != "warn":
                raise Refused("DENIED", f"{why}, or set connectors.{name}.privileges: warn")
            if first:
                _log.warning("%s (connectors.%s.privileges: warn)", why, name)
        if owns:
            why = (f"connector {name}: role {user} owns {', '.join(owns)}: a plugin's "
                   "statement could ALTER or DROP them under its neighbours; give each plugin "
                   f"a role of its own (connectors.{name}.plugins) with only the grants it "
                   "needs (docs/guides/databases.md, One role per plugin)")
            if mode == "strict":
                raise Refused("DENIED", why)
            if first:
                _log.warning("%s", why)
        self._checked.add(user)

    def _clean(self, conn: Any, deadline: float) -> None:
        """The plugin's clean-up of ``conn`` before it goes back (its own deadline's: too
        little of it left, or a clean-up that fails, and the connection is closed, which
        ends everything of its session)."""
        conn.dirty = False
        if conn.killed or self.dialect.closed(conn):
            return  # nothing of its session is left to clean
        if (deadline - time.monotonic()) * 1000 < MIN_STATEMENT_MS:
            if not self.dialect.in_transaction(conn):
                conn.broken = True  # closing it ends the rest
                return
            # A transaction a procedure prepared (XA PREPARE) outlives a closed session:
            # ended on the leaver's own thread all the same, a quarter second at most.
            deadline = time.monotonic() + CLIENT_GRACE_S
        try:
            if self.dialect.clean(conn, deadline):
                conn.heavy = True
        except Exception:
            conn.broken = True

    def _fail(self, exc: BaseException, conn: Any = None) -> Refused:
        if conn is not None and conn.killed:
            refused: Refused | None = timed_out(self.name)  # whatever the cut made it raise
        else:
            refused = exc if isinstance(exc, Refused) else self.dialect.failure(
                exc, self.name, self.redactor)
        if refused is None:
            if not isinstance(exc, Exception):
                raise exc  # KeyboardInterrupt, SystemExit: not the plugin's to hear of
            # A failure no dialect names (a driver's bug, a server asking for a local file):
            # still the plugin's status, never a trap.
            refused = Refused("UNAVAILABLE", f"connector {self.name}: unexpected failure "
                              f"({type(exc).__name__}: {first_line(str(exc), self.redactor)})")
        if refused.status in ("UNAVAILABLE", "DENIED"):
            self.last_error = f"{refused.status}: {refused}"
            self.last_error_at = time.time()
        return refused

    # -- statements --------------------------------------------------------------------------
    def request(self, req: Any) -> tuple[str, list[Any]]:
        """``(sql, params)`` of a §4.10 request object; Refused INVALID."""
        sql = req.get("sql")
        if not isinstance(sql, str) or not sql.strip():
            raise Refused("INVALID", "sql must be a non-empty string")
        if len(sql) > _MAX_SQL:
            raise Refused("TOO_LARGE", f"sql is longer than {_MAX_SQL} characters")
        return sql, params(req.get("params"))

    def run(self, plugin: str, query: bool, sql: str, args: list[Any], deadline: float,
            conn: Any = None) -> bytes:
        """One statement of ``plugin``, in the transaction on ``conn`` or on a pooled
        connection; the §4.10 result JSON. Refused for every failure."""
        c = self.connector
        verdict = judge(sql, c.kind, conn is not None, c.read_only,
                        c.statements.for_plugin(plugin))
        if verdict.reason is not None:
            raise Refused(verdict.status, verdict.message(self.name))
        if verdict.widened:  # the operator's explicit exception, on the record each time
            _log.info("connector %s: plugin %s sends a %s statement, allowed by "
                      "connectors.%s.statements", self.name, plugin, verdict.kind, self.name)
        if (deadline - time.monotonic()) * 1000 < MIN_STATEMENT_MS:
            raise Refused("UNAVAILABLE", f"connector {self.name}: statement timed out")
        leaves = self.dialect.leaves(sql)
        if conn is not None:
            if leaves:
                conn.dirty = True  # cleaned when the transaction ends
            try:
                return self._statement(conn, query, sql, args, deadline)
            except BaseException as exc:
                raise self._fail(exc, conn) from None
        read_only = self.connector.read_only
        for attempt in (0, 1):
            try:
                conn, reused = self.pool.acquire(deadline, plugin)
            except BaseException as exc:
                raise self._fail(exc) from None
            try:
                if read_only:
                    # Every statement in a read-only transaction the plugin cannot leave (its
                    # session's default is not enough: a statement can change that).
                    self.dialect.begin(conn, True, deadline)
                    out = self._statement(conn, query, sql, args, deadline)
                    self.dialect.end(conn, True, deadline)
                    return out
                out = self._statement(conn, query, sql, args, deadline)
                if self.dialect.in_transaction(conn):
                    # A transaction the API did not open: closing the connection rolls it
                    # back, and its statement is not reported as done.
                    conn.broken = True
                    raise Refused("DENIED", f"connector {self.name}: the statement left a "
                                            "transaction open (rolled back): use the API's "
                                            "begin, commit and rollback")
                return out
            except BaseException as exc:
                if read_only and not conn.broken and self.dialect.in_transaction(conn):
                    conn.broken = True  # the read-only transaction is ended by closing
                # A connection idle in the pool may have died with a restarted server: a
                # query runs once more on a fresh connection. A write does not (the server
                # may have run it before the connection broke): its caller hears UNAVAILABLE.
                if reused and self.dialect.lost(exc):
                    conn.broken = True
                    self.pool.discard_idle()  # the others died with it
                    if attempt == 0 and query:
                        continue
                elif self.dialect.closed(conn) or conn.killed or (not isinstance(
                        exc, Refused) and self.dialect.failure(
                        exc, self.name, self.redactor) is None):
                    # (A failure no dialect names, say a server asking for a local file, left
                    # the connection in a state nobody knows: it is not given back.)
                    conn.broken = True
                raise self._fail(exc, conn) from None
            finally:
                if leaves:  # (broken too: a procedure's XA PREPARE must not outlive it)
                    self._clean(conn, deadline)
                self.pool.release(conn)
        raise AssertionError("unreachable")

    def _statement(self, conn: Any, query: bool, sql: str, args: list[Any],
                   deadline: float) -> bytes:
        if not query:
            return dump(self.dialect.execute(conn, sql, args, deadline)).encode()
        c = self.connector
        max_rows, max_bytes = c.max_rows, c.max_result_bytes
        columns, rows, encode = self.dialect.rows(conn, sql, args, deadline)
        pieces: list[bytes] = []
        size = count = held = 0
        # Past _SPILL bytes the JSON is written into one buffer as the rows come, each row's
        # piece dropped once written, and handed over without a copy (BytesIO.getvalue): the
        # pieces and their join held a large result twice at its end. (A small one, most,
        # keeps the join: a buffer costs a one-row query more than it saves.)
        out: io.BytesIO | None = None
        try:
            for row in rows:
                try:
                    piece = encode(row)
                except TypeError:
                    if encode is not PLAIN:
                        raise
                    piece = dump(list(row)).encode()  # (an integer past 64 bits)
                del row  # its values are not held while its JSON is written
                size += len(piece) + 1
                count += 1
                if size > max_bytes or count > max_rows:
                    raise over_cap(self.name, count, size, max_rows, max_bytes)
                if len(piece) > _SPILL and pieces:
                    # A large row is written alone: joined with the rows before it, its
                    # JSON was copied once more (specs/abi.md §4.10, Memory, counts a row's
                    # JSON and the buffer it is written into, no third copy).
                    out = _spill(out, columns, pieces)
                    held = 0
                pieces.append(piece)
                held += len(piece)
                if held > _SPILL:
                    out = _spill(out, columns, pieces)
                    piece, held = b"", 0
        finally:
            rows.close()  # a generator: leaving early ends the query
        if out is None:
            return b"".join((b'{"columns":', columns, b',"rows":[', b",".join(pieces), b"]}"))
        if pieces:
            out.write(b",")
            out.write(b",".join(pieces))
        out.write(b"]}")
        return out.getvalue()

    # -- transactions ------------------------------------------------------------------------
    def begin(self, plugin: str, deadline: float) -> Any:
        """A connection in a new transaction, held for ``plugin``; Refused QUOTA when the
        plugin already holds its share of the pool."""
        with self._lock:
            held = self._held.get(plugin, 0)
            if held >= self.max_held:
                raise Refused("QUOTA", f"connector {self.name}: plugin {plugin} holds "
                                       f"{held} of its {self.connector.pool_size} connections "
                                       "in transactions")
            self._held[plugin] = held + 1
        try:
            for attempt in (0, 1):
                conn, reused = self.pool.acquire(deadline, plugin)
                try:
                    self.dialect.begin(conn, self.connector.read_only, deadline)
                    return conn
                except BaseException as exc:
                    lost = attempt == 0 and reused and self.dialect.lost(exc)
                    conn.broken = conn.broken or lost
                    if lost:
                        self.pool.discard_idle()
                    self.pool.release(conn)
                    if not lost:
                        raise
            raise AssertionError("unreachable")
        except BaseException as exc:
            self._unhold(plugin)
            raise self._fail(exc) from None

    def end(self, plugin: str, conn: Any, commit: bool, deadline: float) -> None:
        """Commit or roll back the transaction on ``conn`` and give it back; Refused when
        the commit failed (the transaction is gone either way)."""
        try:
            self.dialect.end(conn, commit, deadline)
            if self.dialect.in_transaction(conn):
                conn.broken = True  # still in one (ended and begun again behind the API)
        except BaseException as exc:
            conn.broken = True
            if commit:
                raise self._fail(exc, conn) from None
        finally:
            if conn.dirty:
                self._clean(conn, deadline)
            self.pool.release(conn)
            self._unhold(plugin)

    def _unhold(self, plugin: str) -> None:
        with self._lock:
            left = self._held.get(plugin, 1) - 1
            if left:
                self._held[plugin] = left
            else:
                self._held.pop(plugin, None)

    # -- the console -------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        return {"in_use": self.pool.in_use, "idle": self.pool.idle,
                "last_error": self.last_error, "last_error_at": self.last_error_at}

    def close(self) -> None:
        self.pool.close()


def error_line(exc: BaseException, redactor: Redactor) -> str:
    """The first line of a driver's message, credentials cut."""
    return first_line(str(exc).split("\n", 1)[0], redactor)
