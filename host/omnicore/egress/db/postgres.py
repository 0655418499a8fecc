"""PostgreSQL connectors through psycopg 3 (specs/abi.md §4.10).

Statements keep PostgreSQL's own ``$1`` placeholders: the values travel apart from the text,
bound by the server. A query's rows come in chunks (libpq's chunked-rows mode, the one
psycopg's ``Cursor.stream`` uses), so a capped result never sits whole in the host; leaving
early cancels the query. Queries go to libpq through psycopg's ``pq`` layer rather than a
cursor, for two savings a one-row query notices (bench/bench_connectors.py): a statement run
again on a connection is prepared there, as psycopg prepares what ``execute`` runs repeatedly
(``Cursor.stream`` never does: the server parses and plans it every time), and a result's
columns are described once per shape instead of per call. A statement's timeout is the
server's ``statement_timeout``, set only when it changes (a SET costs a round trip), and the
watchdog cancels it from the client too.
"""

from __future__ import annotations

import itertools
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Sequence
from typing import Any

import orjson
import psycopg
from psycopg import errors as pgerrors
from psycopg import generators, pq
from psycopg.adapt import PyFormat, Transformer

from omnicore.egress.db.base import (
    CLIENT_GRACE_S,
    WATCHDOG,
    Watchdog,
    first_line,
    server_timeout_ms,
    timed_out,
)
from omnicore.egress.db.config import DbConnector, Target
from omnicore.egress.db.sql import Dialect, DriverConn, RowEncoder, error_line, row_encoder
from omnicore.egress.db.values import Json, cell
from omnicore.egress.redact import Redactor
from omnicore.egress.refused import Refused

__all__ = ["PostgresDialect"]

_STREAM_CHUNK = 256
# A query is prepared on a connection when it runs there the second time (a plugin's
# statements are literals in its code, so most repeat; one run once costs no extra round
# trip); a connection keeps this many, the least recently run deallocated first.
_PREPARE_AT = 2
_STATEMENTS_MAX = 128
_SHAPES_MAX = 256
# After these commands a prepared statement may name what is gone or changed: all are
# dropped (psycopg's own rule for its prepared statements).
_CLEARS = re.compile(rb"^(?:DROP|ALTER|ROLLBACK|DISCARD ALL|DEALLOCATE ALL)\b").match
# "cached plan must not change result type", "prepared statement does not exist": a
# prepared statement outlived a change made elsewhere; it is dropped and the query rerun.
_STALE = frozenset({"0A000", "26000"})
# Names of the identity cells: what psycopg loads these types as is JSON already.
_PLAIN = frozenset({"bool", "int2", "int4", "int8", "text", "varchar", "name", "bpchar",
                    "oid"})
_names = itertools.count(1)
# The enum members a statement compares with, as plain names: reading one off its enum
# class costs more than the comparison (each query reads several).
_CHUNK, _TUPLES, _COMMAND = (pq.ExecStatus.TUPLES_CHUNK, pq.ExecStatus.TUPLES_OK,
                             pq.ExecStatus.COMMAND_OK)
_IDLE, _ACTIVE = pq.TransactionStatus.IDLE, pq.TransactionStatus.ACTIVE
_AUTO = (PyFormat.AUTO,)


class _Statement:
    """A query text with its parameter types on one connection: how often it ran and, once
    prepared, its name there."""

    __slots__ = ("name", "query", "runs", "shape")

    def __init__(self, query: bytes) -> None:
        self.query = query
        self.runs = 0
        self.name: bytes | None = None
        # Its result's columns, once prepared (a change of them fails the statement: 0A000).
        self.shape: tuple[bytes, RowEncoder] | None = None


class _Conn(DriverConn["psycopg.Connection[Any]"]):
    __slots__ = ("cancel", "encoding", "shapes", "statements", "timeout_ms", "tx", "unprepare")

    def __init__(self, raw: psycopg.Connection[Any], limit_ms: int) -> None:
        super().__init__(raw, limit_ms)
        self.timeout_ms = -1        # the server's statement_timeout as last set
        self.cancel = raw.cancel_safe  # what the watchdog calls (bound once, not per statement)
        self.tx = Transformer(raw)
        self.encoding = raw.info.encoding  # read again after execute (a SET may change it)
        self.statements: OrderedDict[tuple[str, tuple[int, ...]], _Statement] = \
            OrderedDict()
        # Prepared names to deallocate before the next statement (None: all of them).
        self.unprepare: list[bytes | None] = []
        # A result's columns (names and type oids) -> their JSON and the row encoder.
        self.shapes: dict[tuple[Any, ...], tuple[bytes, RowEncoder]] = {}

    def forget_statements(self) -> None:
        if any(st.name for st in self.statements.values()):
            self.unprepare = [None]
        self.statements.clear()

    def close_raw(self) -> None:
        self.raw.close()


def _json_cell(value: Any) -> Any:
    return None if value is None else {"$json": value}


def _arg(value: Any) -> Any:
    # A $json parameter goes as text of unknown type: the server reads it as the json or
    # jsonb its place wants.
    return value.text() if type(value) is Json else value


class PostgresDialect(Dialect):
    """psycopg 3, autocommit connections; transactions are explicit BEGIN/COMMIT."""

    def connect(self, target: Target, connector: DbConnector, deadline: float) -> _Conn:
        kwargs: dict[str, Any] = {
            "host": target.socket or target.host, "port": target.port,
            "dbname": target.database or None, "user": target.user,
            "password": target.password, "application_name": "omnicore",
            "connect_timeout": max(2, math.ceil(deadline - time.monotonic())),
            "autocommit": True, "cursor_factory": psycopg.RawCursor,
            # This module prepares the queries; psycopg would prepare BEGIN and SET.
            "prepare_threshold": None,
        }
        if connector.read_only:
            kwargs["options"] = "-c default_transaction_read_only=on"
        raw = psycopg.connect(**{k: v for k, v in kwargs.items() if v is not None})
        return _Conn(raw, connector.statement_timeout_ms)

    def _timeout(self, conn: _Conn, deadline: float) -> list[Any]:
        """Set the statement's server timeout; arm the client's (its watchdog entry)."""
        ms = server_timeout_ms(conn.limit_ms, deadline)
        if ms != conn.timeout_ms:
            conn.raw.execute(f"SET statement_timeout = {int(ms)}")
            conn.timeout_ms = ms
        return WATCHDOG.arm(time.monotonic() + ms / 1000 + CLIENT_GRACE_S, conn.cancel)

    def rows(self, conn: _Conn, sql: str, args: list[Any], deadline: float
             ) -> tuple[bytes, Generator[Sequence[Any], None, None], RowEncoder]:
        entry = self._timeout(conn, deadline)
        try:
            first, st = _start(conn, sql, args if Json not in map(type, args)
                               else [_arg(a) for a in args])
            shape = st.shape or _shape(conn, first)
            if st.name is not None:
                st.shape = shape
            columns, encode = shape
        except BaseException:
            Watchdog.disarm(entry)
            raise
        return columns, _rows(conn, first, entry), encode

    def execute(self, conn: _Conn, sql: str, args: list[Any], deadline: float
                ) -> dict[str, Any]:
        entry = self._timeout(conn, deadline)
        try:
            _unprepare(conn)
            cur = conn.raw.execute(sql, [_arg(a) for a in args])
            if _CLEARS((cur.statusmessage or "").encode()):
                conn.forget_statements()
            conn.encoding = conn.raw.info.encoding
            return {"rows_affected": max(cur.rowcount, 0)}
        finally:
            Watchdog.disarm(entry)

    def begin(self, conn: _Conn, read_only: bool, deadline: float) -> None:
        conn.raw.execute("BEGIN READ ONLY" if read_only else "BEGIN")

    def end(self, conn: _Conn, commit: bool, deadline: float) -> None:
        conn.raw.execute("COMMIT" if commit else "ROLLBACK")
        if not commit:
            conn.forget_statements()
        if conn.raw.info.transaction_status != _IDLE:
            conn.broken = True

    def lost(self, exc: BaseException) -> bool:
        return isinstance(exc, psycopg.OperationalError) and not isinstance(
            exc, pgerrors.QueryCanceled) and getattr(exc, "sqlstate", None) is None

    def failure(self, exc: BaseException, connector: str, redactor: Redactor
                ) -> Refused | None:
        if not isinstance(exc, psycopg.Error):
            return None
        state = getattr(exc, "sqlstate", None) or ""
        if isinstance(exc, pgerrors.QueryCanceled):
            return timed_out(connector)
        if state in ("28P01", "28000") or "password authentication failed" in str(exc):
            return Refused("DENIED", f"authentication failed for connector {connector}")
        if state == "42501":
            return Refused("DENIED", f"connector {connector}: {error_line(exc, redactor)}")
        if state == "25006":  # read_only_sql_transaction
            return Refused("DENIED", f"connector {connector} is read-only: "
                                     f"{error_line(exc, redactor)}")
        if isinstance(exc, psycopg.OperationalError) and not state:
            text = str(exc)
            reason = ("connection refused" if "refused" in text or "No such file" in text
                      else "timed out" if "timeout" in text
                      else "connection lost" if "closed" in text or "terminat" in text
                      else first_line(text.split("\n", 1)[0], redactor, 160))
            return Refused("UNAVAILABLE", f"connector {connector}: {reason}")
        if state.startswith(("08", "57", "53", "58", "XX")):
            return Refused("UNAVAILABLE", f"connector {connector}: {error_line(exc, redactor)}")
        return Refused("INVALID", f"connector {connector}: {error_line(exc, redactor)}")


def _unprepare(conn: _Conn) -> None:
    """Deallocate what :meth:`_Conn.forget_statements` or the cache's bound let go."""
    names, conn.unprepare = conn.unprepare, []
    for name in names:
        conn.raw.execute("DEALLOCATE " + ("ALL" if name is None else name.decode()))


def _send_fetch(conn: _Conn) -> Any:
    """Send what is queued on the connection and wait for its first result. A short
    statement leaves in one flush, so libpq's fetch is waited on alone (a generator of
    psycopg's C, with no Python frame around it)."""
    raw, pgconn = conn.raw, conn.raw.pgconn
    if pgconn.flush():
        raw.wait(generators.send(pgconn))
    return raw.wait(generators.fetch(pgconn))


def _drain(conn: _Conn) -> None:
    """Read the results left of the running statement (the connection is free after)."""
    while _next(conn) is not None:
        pass


def _next(conn: _Conn) -> Any:
    """The statement's next result (None after the last): read from the socket only when
    libpq has not got it yet (the end of a short result came with its rows)."""
    pgconn = conn.raw.pgconn
    if pgconn.is_busy():
        return conn.raw.wait(generators.fetch(pgconn))
    return pgconn.get_result()


def _failed(conn: _Conn, res: Any) -> BaseException:
    """The driver's exception for an error result (read to the end first)."""
    _drain(conn)
    return pgerrors.error_from_result(res, encoding=conn.encoding)


def _start(conn: _Conn, sql: str, args: list[Any]) -> tuple[Any, _Statement]:
    """Send a query in chunked-rows mode, prepared when it runs again; its first result (a
    chunk of rows, or the end of a result without rows) and its statement."""
    raw, pgconn, tx = conn.raw, conn.raw.pgconn, conn.tx
    if conn.unprepare:
        _unprepare(conn)
    if args:
        values: Sequence[Any] | None = tx.dump_sequence(args, _AUTO * len(args))
        types, formats = tuple(tx.types or ()), tx.formats
    else:
        values, types, formats = None, (), None
    key = (sql, types)
    st = conn.statements.get(key)
    if st is None:
        st = conn.statements[key] = _Statement(sql.encode(conn.encoding))
        if len(conn.statements) > _STATEMENTS_MAX:
            old = conn.statements.popitem(last=False)[1]
            if old.name:
                conn.unprepare.append(old.name)
    else:
        conn.statements.move_to_end(key)
    st.runs += 1
    with raw.lock:
        if st.name is None and st.runs >= _PREPARE_AT:
            name = b"omnicore_%d" % next(_names)
            pgconn.send_prepare(name, st.query, param_types=types)
            res = _send_fetch(conn)
            if res.status != _COMMAND:
                conn.statements.pop(key, None)
                raise _failed(conn, res)
            _drain(conn)
            st.name = name
        if st.name is not None:
            pgconn.send_query_prepared(st.name, values, param_formats=formats)
        else:
            pgconn.send_query_params(st.query, values, param_types=types,
                                     param_formats=formats)
        pgconn.set_chunked_rows_mode(_STREAM_CHUNK)
        res = _send_fetch(conn)
    status = res.status
    if status == _CHUNK or status == _TUPLES:
        return res, st
    if status == _COMMAND:
        _drain(conn)
        if _CLEARS(res.command_status or b""):
            conn.forget_statements()
        raise psycopg.ProgrammingError("the statement returns no rows (run it with execute)")
    exc = _failed(conn, res)
    if st.name is not None and getattr(exc, "sqlstate", None) in _STALE:
        conn.forget_statements()
        if pgconn.transaction_status == _IDLE:
            return _start(conn, sql, args)
    raise exc


def _shape(conn: _Conn, res: Any) -> tuple[bytes, RowEncoder]:
    """The JSON of a result's columns and its row encoder (made once per shape)."""
    n = res.nfields
    key = tuple(res.fname(i) for i in range(n)) + tuple(res.ftype(i) for i in range(n))
    shape = conn.shapes.get(key)
    if shape is not None:
        return shape
    types = conn.raw.adapters.types
    columns: list[dict[str, Any]] = []
    convert: list[Callable[[Any], Any] | None] = []
    for i in range(n):
        oid = res.ftype(i)
        info = types.get(oid)
        kind = info.name if info is not None else str(oid)
        columns.append({"name": (res.fname(i) or b"").decode(conn.encoding),
                        "type": kind})
        convert.append(None if kind in _PLAIN else _json_cell if kind in ("json", "jsonb")
                       else cell)
    if len(conn.shapes) >= _SHAPES_MAX:
        conn.shapes.clear()
    shape = conn.shapes[key] = (orjson.dumps(columns), row_encoder(convert))
    return shape


def _rows(conn: _Conn, first: Any, entry: list[Any]) -> Generator[Sequence[Any], None, None]:
    """The rows of a query from its first result on; leaving early cancels the rest."""
    raw, tx = conn.raw, conn.tx
    pgconn = raw.pgconn
    res, done = first, False
    try:
        loaders = True
        while res is not None:
            status = res.status
            if status == _CHUNK:
                tx.set_pgresult(res, set_loaders=loaders)
                loaders = False
                # Row by row: a row past a cap ends the query before the rest of the chunk
                # is decoded.
                for i in range(res.ntuples):
                    yield tx.load_row(i, tuple)
            elif status != _TUPLES:
                raise _failed(conn, res)
            # _next(conn), written out (two per query)
            res = (raw.wait(generators.fetch(pgconn)) if pgconn.is_busy()
                   else pgconn.get_result())
        done = True
    finally:
        Watchdog.disarm(entry)
        if not done and raw.pgconn.transaction_status == _ACTIVE:
            # Leaving early: the server stops the query and what it sent is read and
            # dropped, a chunk at a time.
            raw.cancel_safe()
            try:
                _drain(conn)
            except Exception:
                pass
