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
watchdog cancels it from the client too. What libpq may read off the socket, and so hold, is
bounded in :mod:`omnicore.egress.db.pg_wire`.
"""

from __future__ import annotations

import array
import functools
import itertools
import math
import os
import re
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
import psycopg
from psycopg import errors as pgerrors
from psycopg import generators, pq
from psycopg.adapt import PyFormat, Transformer

from omnicore.egress.db.base import (
    CLIENT_GRACE_S,
    HARD_GRACE_S,
    HOST_TIMES,
    SIDE_TIMEOUT_S,
    WATCHDOG,
    Watchdog,
    first_line,
    on_side,
    over_cap,
    server_timeout_ms,
    shut,
    timed_out,
)
from omnicore.egress.db.config import DbConnector, Target
from omnicore.egress.db.lifetime import pg_leaves
from omnicore.egress.db.pg_wire import (
    chunk_field,
    close,
    fetch,
    getlength,
    input_fields,
    memsize,
    open_bounded,
)
from omnicore.egress.db.sql import Dialect, DriverConn, RowEncoder, error_line, row_encoder
from omnicore.egress.db.values import Json, cell
from omnicore.egress.redact import Redactor
from omnicore.egress.refused import Refused

__all__ = ["PostgresDialect"]

# Rows per chunk of a result: libpq holds a chunk whole (its PGresult) while its rows are
# decoded and their JSON written, so a result of large rows costs a chunk beside its JSON:
# 240 rows of 100 KiB under a 32 MiB cap cost 2.0 x the JSON in 256-row chunks, 1.21 x in 32-row
# ones (tests/egress/db/test_result_memory.py). Ten thousand small rows pay a few percent
# more get_result calls; a one-row query nothing. Large rows come one a chunk: once libpq has
# read pg_wire.CHUNK_BYTES for a chunk, pg_wire.fetch sets its chunk size to 1 in place
# (conn.chunk; the statement's set_chunked_rows_mode sets it back), so a chunk costs at most
# about 1 MiB and a row beside the JSON: 60 rows of 500 KiB under a 32 MiB cap were refused
# (32 of them held twice), now cost 1.05 x the cap.
_STREAM_CHUNK = 32
#: The size of a chunk's PGresult past which it is freed as soon as its last row is read.
_LARGE_CHUNK = 1 << 20
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
# Results a statement of the connector never asks for: a server that sends one (a COPY the
# statement gate let through, or a spoofed server) is out of step with the connector; libpq
# answers every get_result with the same COPY result, so a loop over results would never end.
_UNASKED = frozenset({pq.ExecStatus.COPY_OUT, pq.ExecStatus.COPY_IN, pq.ExecStatus.COPY_BOTH,
                      pq.ExecStatus.PIPELINE_SYNC, pq.ExecStatus.PIPELINE_ABORTED})
# What libpq may read off the socket while it assembles one result (a chunk of rows, a
# notice, an error), past max_result_bytes: a result's messages' framing. A longer one is
# refused before libpq reads the rest (libpq holds a message whole before it hands on any of
# it: a 400 MB row was 400 MB of libpq's buffer and 400 MB of its result).
_WIRE_SLACK = 64 << 10
# psycopg's wait of a connection, called past pg_wire's override, which passes fetch (a
# result bounded by itself) through as it is: a frame less per wait.
_WAIT = psycopg.Connection.wait


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
    __slots__ = ("budget", "cancel", "chunk", "connector", "encoding", "held", "in_fields",
                 "loaded", "max_bytes",
                 "pending", "row_cap", "sever", "shapes", "statements", "timeout_ms", "tx",
                 "unprepare", "wire_cap")

    def __init__(self, raw: psycopg.Connection[Any], connector: DbConnector,
                 side: dict[str, Any]) -> None:
        super().__init__(raw, connector.statement_timeout_ms)
        # A row whose cells are longer on the wire than this is over max_result_bytes
        # whatever they are (a cell's JSON is at least half its text: bytea's hex), refused
        # before it is decoded. (libpq has read the row whole by then: the bound it leaves.)
        self.row_cap = 2 * connector.max_result_bytes
        # What libpq may read for one result before the result is refused (pg_wire.fetch),
        # and the ioctl's buffer for the bytes waiting on the socket.
        self.max_bytes = connector.max_result_bytes
        self.wire_cap = connector.max_result_bytes + _WIRE_SLACK
        # What a result may cost the host, and what libpq read for the statement's result
        # so far (pg_wire.fetch: a message that would take the one past the other is
        # refused before libpq reads it).
        self.budget = int(connector.max_result_bytes * HOST_TIMES)
        self.held = 0
        self.pending = array.array("i", [0])
        # The address of libpq's input-buffer fields in this connection's PGconn (0: unknown).
        self.in_fields = input_fields(raw.pgconn)
        # libpq's maxChunkSize in it (pg_wire.fetch cuts a result of large rows to one row
        # a chunk; each statement sets it again).
        self.chunk = chunk_field(raw.pgconn)
        self.connector = connector.name
        self.timeout_ms = -1        # the server's statement_timeout as last set
        # What the watchdog calls at a deadline (made once, not per statement): the cancel
        # request, then, when the statement outlived it, the cut.
        self.cancel = on_side(functools.partial(raw.cancel_safe, timeout=SIDE_TIMEOUT_S))
        self.sever = functools.partial(_sever, self, raw.pgconn.backend_pid, side)
        self.tx = Transformer(raw)
        # The shape whose columns' loaders tx holds (set by the last result it read): a
        # result of the same shape reads its rows with them, not new ones looked up.
        self.loaded: tuple[bytes, RowEncoder] | None = None
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


def _tls(target: Target) -> dict[str, Any]:
    """libpq's TLS and authentication parameters for ``target`` (specs/abi.md §4.12):

    * ``sslmode`` as the URL says (``disable`` unless it says otherwise: never libpq's
      ``prefer``, which falls back to cleartext without a word), ``sslrootcert`` its CA
      file, or the system's CAs for ``verify-full`` without one;
    * the password never in clear, nor its MD5, except to a server verify-full checked or
      with the operator's ``password_to_unverified_server: allow`` (``require_auth``
      refuses the server's request for either otherwise: a spoofed server gets nothing);
    * SCRAM's channel binding required over TLS that does not check the host
      (``require``, ``verify-ca``): a man in the middle of such TLS cannot relay the
      authentication; ``prefer`` over verify-full, where it adds nothing the check did not.
    """
    mode = target.sslmode
    out: dict[str, Any] = {"sslmode": mode}
    if mode != "disable":
        out["sslrootcert"] = target.sslrootcert or (
            "system" if mode == "verify-full" else None)
    out["channel_binding"] = target.channel_binding or (
        "disable" if mode == "disable" else "prefer" if target.verified else "require")
    if not target.password_ok:
        # (SCRAM stays allowed: its proof is made with the server's salt and nonce, never
        # replayable, and with channel binding over TLS never relayed.)
        out["require_auth"] = "!password,!md5"
    return out


def _check_strings(raw: psycopg.Connection[Any], connector: str, target: Target) -> None:
    """Refuse a session whose ``standard_conforming_strings`` is not ``on`` (libpq's
    ParameterStatus at start-up): the statement gate reads a string as PostgreSQL's default
    does, where a backslash is a character; with it off a backslash escapes the quote after
    it, and what the gate took for a string's text the server runs as code."""
    value = raw.info.parameter_status("standard_conforming_strings")
    if value == "on":
        return
    raw.close()
    db, role = target.database or target.user, target.user
    raise Refused("UNAVAILABLE", f"connector {connector}: the server runs database {db} for "
                                 f"role {role} with standard_conforming_strings = "
                                 f"{value or 'unset'}, which the statement gate does not read "
                                 f"(a backslash in a string would escape): set it on (ALTER "
                                 f"DATABASE {db} SET standard_conforming_strings = on; ALTER "
                                 f"ROLE {role} RESET standard_conforming_strings; or "
                                 "standard_conforming_strings = on in postgresql.conf)")


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
        kwargs.update(_tls(target))
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        # (Given as None, not dropped with the unset ones above: psycopg's own default
        # prepares a statement run five times, under names a reset's DISCARD ALL drops.)
        kwargs["prepare_threshold"] = None
        # Bounded by the call's deadline too: libpq's connect_timeout is at least 2 s.
        raw = open_bounded(kwargs, deadline)
        _check_strings(raw, connector.name, target)
        side = dict(kwargs, connect_timeout=math.ceil(SIDE_TIMEOUT_S),
                    options=f"-c statement_timeout={int(SIDE_TIMEOUT_S * 1000)}")
        return _Conn(raw, connector, side)

    def _timeout(self, conn: _Conn, deadline: float) -> list[Any]:
        """Set the statement's server timeout; arm the client's (its watchdog entry), first:
        a server that answers the SET with notices for ever is cut at the deadline too."""
        ms = server_timeout_ms(conn.limit_ms, deadline)
        entry = WATCHDOG.arm(time.monotonic() + ms / 1000 + CLIENT_GRACE_S, conn.cancel,
                             then=(HARD_GRACE_S, conn.sever))
        if ms != conn.timeout_ms:
            try:
                conn.raw.execute(f"SET statement_timeout = {int(ms)}")
            except BaseException:
                Watchdog.disarm(entry)
                raise
            conn.timeout_ms = ms
        return entry

    def rows(self, conn: _Conn, sql: str, args: list[Any], deadline: float
             ) -> tuple[bytes, Generator[Sequence[Any], None, None], RowEncoder]:
        # _timeout(conn, deadline) written out (a frame less per query)
        ms = server_timeout_ms(conn.limit_ms, deadline)
        entry = WATCHDOG.arm(time.monotonic() + ms / 1000 + CLIENT_GRACE_S, conn.cancel,
                             then=(HARD_GRACE_S, conn.sever))
        try:
            if ms != conn.timeout_ms:
                conn.raw.execute(f"SET statement_timeout = {int(ms)}")
                conn.timeout_ms = ms
            first, st = _start(conn, sql, args if Json not in map(type, args)
                               else [_arg(a) for a in args])
            shape = st.shape or _shape(conn, first)
            if st.name is not None:
                st.shape = shape
            columns, encode = shape
        except BaseException:
            Watchdog.disarm(entry)
            raise
        return columns, _rows(conn, first, entry, shape), encode

    def execute(self, conn: _Conn, sql: str, args: list[Any], deadline: float
                ) -> dict[str, Any]:
        entry = self._timeout(conn, deadline)
        try:
            return {"rows_affected": _command(conn, sql, [_arg(a) for a in args])}
        finally:
            Watchdog.disarm(entry)

    def begin(self, conn: _Conn, read_only: bool, deadline: float) -> None:
        # The SELECT takes the transaction's snapshot: after it PostgreSQL refuses to make
        # the transaction read-write ("must be set before any query"), whatever the plugin's
        # statements do (SET LOCAL transaction_read_only, set_config, a DO block). Host
        # text, so the simple protocol's two statements in one round trip.
        conn.raw.execute(b"BEGIN READ ONLY; SELECT 1" if read_only else b"BEGIN")

    def end(self, conn: _Conn, commit: bool, deadline: float) -> None:
        conn.raw.execute("COMMIT" if commit else "ROLLBACK")
        if not commit:
            conn.forget_statements()
        if conn.raw.info.transaction_status != _IDLE:
            conn.broken = True

    def writable(self, conn: _Conn) -> str | None:
        row = conn.raw.execute(
            "SELECT rolsuper, has_database_privilege(current_database(), 'CREATE'), "
            "EXISTS (SELECT 1 FROM information_schema.role_table_grants WHERE grantee = "
            "current_user AND privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')), "
            "EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE pg_has_role(c.relowner, 'USAGE') AND n.nspname NOT IN ('pg_catalog', "
            "'information_schema') AND n.nspname NOT LIKE 'pg_toast%') "
            "FROM pg_roles WHERE rolname = current_user").fetchone()
        names = ("superuser", "CREATE on the database", "INSERT, UPDATE or DELETE on a table",
                 "owns tables")
        found = [n for n, yes in zip(names, row or (), strict=False) if yes]
        return ", ".join(found) or None

    def in_transaction(self, conn: _Conn) -> bool:
        return conn.raw.pgconn.transaction_status != _IDLE

    def privileges(self, conn: _Conn, deadline: float) -> tuple[list[str], list[str]]:
        with WATCHDOG.cut_at(deadline, conn.sever):
            row = conn.raw.execute(_PRIVILEGES).fetchone()
        if row is None:
            return ["no pg_roles row (the role could not be read)"], []
        flags, members, owns = row[:5], row[5] or [], row[6:]
        powers = [n for n, yes in zip(("superuser", "CREATEROLE", "CREATEDB", "BYPASSRLS",
                                       "REPLICATION"), flags, strict=True) if yes]
        powers += [f"membership in {m}" for m in members if not flags[0]]
        owned = [n for n, yes in zip(("tables", "schemas", "the database"), owns, strict=True)
                 if yes]
        return powers, owned

    # The gate's cached function itself (a frame less per statement).
    leaves = staticmethod(pg_leaves)

    @contextmanager
    def _idle(self, conn: _Conn, deadline: float) -> Iterator[psycopg.Connection[Any]]:
        """The session out of any transaction it was left in, for clean() and reset(): their
        round trips bounded as a statement is (a server that does not answer is cut)."""
        raw = conn.raw
        with WATCHDOG.cut_at(deadline, conn.sever):
            if raw.pgconn.transaction_status != _IDLE:
                raw.execute("ROLLBACK")
            yield raw

    def clean(self, conn: _Conn, deadline: float) -> bool:
        with self._idle(conn, deadline) as raw:
            # One round trip: the session's advisory locks released, whether it has had
            # temporary tables, and whether the server takes prepared transactions (off by
            # default: then the role can have none, and the view, 150 µs, is not read).
            row = raw.execute(_CLEAN).fetchone()
            if row is None:
                raise psycopg.OperationalError("the server did not confirm the clean-up")
            if row[2]:
                # PREPARE TRANSACTION is a statement of its own: this runs after it.
                for (gid,) in raw.execute(_PREPARED).fetchall():
                    raw.execute("ROLLBACK PREPARED '" + str(gid).replace("'", "''") + "'")
        return bool(row[1])

    def reset(self, conn: _Conn, deadline: float) -> None:
        with self._idle(conn, deadline) as raw:
            # Settings (search_path, role, client_encoding, ...), prepared statements,
            # cursors, temporary tables, advisory locks, LISTEN: all of the session's, as
            # one command whose answer the server gives only when it did all of it.
            cur = raw.execute("DISCARD ALL")
            if cur.statusmessage != "DISCARD ALL" or raw.pgconn.transaction_status != _IDLE:
                raise psycopg.OperationalError("the server did not confirm DISCARD ALL")
        conn.statements.clear()  # deallocated by the server
        conn.unprepare = []
        conn.shapes.clear()
        conn.timeout_ms = -1
        conn.encoding = raw.info.encoding

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
            refused = _refused_at_connect(text, connector, redactor)
            if refused is not None:
                return refused
            reason = ("connection refused" if "refused" in text or "No such file" in text
                      else "timed out" if "timeout" in text
                      else "connection lost" if "closed" in text or "terminat" in text
                      else first_line(text.split("\n", 1)[0], redactor, 160))
            return Refused("UNAVAILABLE", f"connector {connector}: {reason}")
        if state.startswith(("08", "57", "53", "58", "XX")):
            return Refused("UNAVAILABLE", f"connector {connector}: {error_line(exc, redactor)}")
        return Refused("INVALID", f"connector {connector}: {error_line(exc, redactor)}")


#: libpq's words when the TLS or authentication this connector requires did not happen.
_AUTH_WORDS = ("require_auth", "authentication method requirement", "channel binding")
_TLS_WORDS = ("SSL", "certificate", "TLS")


def _refused_at_connect(text: str, connector: str, redactor: Redactor) -> Refused | None:
    """The refusal of a connection libpq ended for want of the TLS or authentication the
    URL requires (specs/abi.md §4.12), saying what to do."""
    line = first_line(text.split("\n", 1)[0].removeprefix("connection failed: "),
                      redactor, 200)
    what = ("the password in clear" if "cleartext password" in text else
            "an MD5 hash of the password" if "hashed password" in text else None)
    if what is not None:
        return Refused("DENIED", f"connector {connector}: the server asked for {what}, which "
                                 "goes only to a server TLS verified (sslmode=verify-full); "
                                 "use SCRAM on the server (password_encryption = "
                                 "'scram-sha-256', then set the role's password again), give "
                                 "the connector sslmode=verify-full, or set connectors."
                                 f"{connector}.password_to_unverified_server: allow")
    if any(w in text for w in _AUTH_WORDS):
        return Refused("DENIED", f"connector {connector}: the server's authentication is not "
                                 f"one the connector allows ({line})")
    if any(w in text for w in _TLS_WORDS):
        return Refused("UNAVAILABLE", f"connector {connector}: TLS failed ({line})")
    return None


#: A role's powers over the server, its memberships in the roles that reach the server's
#: files, programs and other sessions, and what it owns (PostgreSQL 15's catalogs).
_PRIVILEGES = (
    "SELECT r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolbypassrls, r.rolreplication, "
    "ARRAY(SELECT b.rolname FROM pg_roles b WHERE b.rolname IN ('pg_read_server_files', "
    "'pg_write_server_files', 'pg_execute_server_program', 'pg_signal_backend', "
    "'pg_read_all_data', 'pg_write_all_data') AND pg_has_role(r.oid, b.oid, 'MEMBER') "
    "ORDER BY 1), "
    "EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE "
    "pg_has_role(r.oid, c.relowner, 'USAGE') AND c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') "
    "AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE "
    "'pg\\_%'), "
    "EXISTS (SELECT 1 FROM pg_namespace n WHERE pg_has_role(r.oid, n.nspowner, 'USAGE') AND "
    "n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE "
    "'pg\\_%'), "
    "EXISTS (SELECT 1 FROM pg_database d WHERE d.datname = current_database() AND "
    "pg_has_role(r.oid, d.datdba, 'USAGE')) "
    "FROM pg_roles r WHERE r.rolname = current_user")
#: What a plugin's statement may have left (lifetime.py). A session that ever made a
#: temporary table keeps its temporary schema: such a session stays its plugin's.
_CLEAN = (b"SELECT pg_advisory_unlock_all(), pg_my_temp_schema() <> 0, "
          b"current_setting('max_prepared_transactions') <> '0'")
_PREPARED = (b"SELECT gid FROM pg_prepared_xacts WHERE owner = current_user AND database = "
             b"current_database()")



def _sever(conn: _Conn, pid: int, side: dict[str, Any]) -> None:
    """Cut ``conn`` (the watchdog, when a statement outlived its cancel): its socket shut
    down here, so the call ends now, and its backend terminated from a side connection, so
    nothing of the statement keeps running on the server (a backend notices a closed client
    only when it next writes to it)."""
    conn.killed = True
    try:
        fd = conn.raw.pgconn.socket
    except psycopg.OperationalError:
        fd = -1  # closed already
    if fd >= 0:
        _shut_down(fd)
    on_side(functools.partial(_terminate, pid, side))()


def _terminate(pid: int, side: dict[str, Any]) -> None:
    with open_bounded(side) as raw:
        # Its answer bounded too (a side thread never waits longer than SIDE_TIMEOUT_S): a
        # server that answers with notices, or a COPY, for ever has the socket shut down.
        fd = raw.pgconn.socket
        entry = WATCHDOG.arm(time.monotonic() + SIDE_TIMEOUT_S,
                             functools.partial(_shut_down, fd))
        try:
            raw.execute("SELECT pg_terminate_backend($1)", [pid])  # (a RawCursor's $1)
        finally:
            Watchdog.disarm(entry)


def _shut_down(fd: int) -> None:
    """Shut down the socket ``fd`` (libpq's) through a duplicate of the descriptor: a wait
    on it ends with an error; libpq still closes its own."""
    with socket.socket(fileno=os.dup(fd)) as sock:
        shut(sock)


def _bind(conn: _Conn, args: list[Any]) -> tuple[Sequence[Any] | None, tuple[int, ...], Any]:
    """A statement's parameters as libpq takes them (values, type oids, formats), after what
    is due to be deallocated was."""
    if conn.unprepare:
        _unprepare(conn)
    if not args:
        return None, (), None
    tx = conn.tx
    values = tx.dump_sequence(args, _AUTO * len(args))
    return values, tuple(tx.types or ()), tx.formats


def _command(conn: _Conn, sql: str, args: list[Any]) -> int:
    """Run a statement for its count, on the extended protocol (one statement, whatever its
    text holds: psycopg would send one without parameters on the simple protocol, which
    runs several); a result's rows are counted a chunk at a time, never held."""
    raw, pgconn = conn.raw, conn.raw.pgconn
    values, types, formats = _bind(conn, args)
    with raw.lock:
        pgconn.send_query_params(sql.encode(conn.encoding), values, param_types=types,
                                 param_formats=formats)
        pgconn.set_chunked_rows_mode(_STREAM_CHUNK)
        conn.held = 0
        res = _send_fetch(conn)
    count = 0
    while res is not None:
        conn.held = 0  # (counted, never held: each chunk is bounded alone)
        status = res.status
        if status == _CHUNK:
            count += res.ntuples
        elif status == _COMMAND:
            count = res.command_tuples or 0
            if _CLEARS(res.command_status or b""):
                conn.forget_statements()
        elif status != _TUPLES:
            raise _failed(conn, res)
        res = _next(conn)
    conn.encoding = raw.info.encoding
    return count



def _unprepare(conn: _Conn) -> None:
    """Deallocate what :meth:`_Conn.forget_statements` or the cache's bound let go."""
    names, conn.unprepare = conn.unprepare, []
    for name in names:
        conn.raw.execute("DEALLOCATE " + ("ALL" if name is None else name.decode()))


def _send_fetch(conn: _Conn) -> Any:
    """Send what is queued on the connection and wait for its first result (a short
    statement leaves in one flush)."""
    raw, pgconn = conn.raw, conn.raw.pgconn
    if pgconn.flush():
        raw.wait(generators.send(pgconn))
    return _WAIT(raw, fetch(conn))


def _unasked(conn: _Conn, res: Any) -> Refused:
    """A result the connector did not ask for (:data:`_UNASKED`): the connection closed,
    the call told so."""
    close(conn)
    return Refused("UNAVAILABLE", f"connector {conn.connector}: the server answered with "
                                  f"{pq.ExecStatus(res.status).name}, which the connector "
                                  "never asks for; "
                                  "the connection was closed")


def _drain(conn: _Conn) -> None:
    """Read the results left of the running statement (the connection is free after).
    Each result is bounded in bytes (:func:`fetch`) and the whole by the statement's
    deadline; a COPY the server starts ends the call (libpq would return it for ever)."""
    while (res := _next(conn)) is not None:
        if res.status in _UNASKED:
            raise _unasked(conn, res)


def _next(conn: _Conn) -> Any:
    """The statement's next result (None after the last): read from the socket only when
    libpq has not got it yet (the end of a short result came with its rows)."""
    pgconn = conn.raw.pgconn
    if pgconn.is_busy():
        return _WAIT(conn.raw, fetch(conn))
    return pgconn.get_result()


def _failed(conn: _Conn, res: Any) -> BaseException:
    """The driver's exception for an error result (read to the end first); Refused, the
    connection closed, for a result the connector never asks for."""
    if res.status in _UNASKED:
        return _unasked(conn, res)
    _drain(conn)
    return pgerrors.error_from_result(res, encoding=conn.encoding)


def _start(conn: _Conn, sql: str, args: list[Any]) -> tuple[Any, _Statement]:
    """Send a query in chunked-rows mode, prepared when it runs again; its first result (a
    chunk of rows, or the end of a result without rows) and its statement."""
    raw, pgconn = conn.raw, conn.raw.pgconn
    # _bind(conn, args) written out (a frame less per statement)
    if conn.unprepare:
        _unprepare(conn)
    if args:
        tx = conn.tx
        values = tx.dump_sequence(args, _AUTO * len(args))
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
        conn.held = 0  # (pg_wire.fetch counts what the result holds from here)
        if st.name is not None:
            pgconn.send_query_prepared(st.name, values, param_formats=formats)
        else:
            pgconn.send_query_params(st.query, values, param_types=types,
                                     param_formats=formats)
        pgconn.set_chunked_rows_mode(_STREAM_CHUNK)
        # _send_fetch(conn) written out
        if pgconn.flush():
            raw.wait(generators.send(pgconn))
        res = _WAIT(raw, fetch(conn))
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


def _rows(conn: _Conn, first: Any, entry: list[Any], shape: tuple[bytes, RowEncoder]
          ) -> Generator[Sequence[Any], None, None]:
    """The rows of a query of ``shape`` from its first result on; leaving early cancels the
    rest."""
    raw, tx = conn.raw, conn.tx
    pgconn = raw.pgconn
    res, done = first, False
    try:
        # Its columns' loaders looked up unless tx holds this shape's already (the same
        # column types, so the same loaders): once per shape, not per query.
        loaders = conn.loaded is not shape
        while res is not None:
            status = res.status
            if status == _CHUNK:
                tx.set_pgresult(res, set_loaders=loaders)
                if loaders:
                    conn.loaded, loaders = shape, False
                # Row by row: a row past a cap ends the query before the rest of the chunk
                # is decoded; in a chunk larger than a row may be (one call per chunk: the
                # common small result pays no more), a row too long on the wire before it is.
                ptr = res.pgresult_ptr
                size = memsize(ptr)
                if size > _LARGE_CHUNK:
                    # A large chunk's PGresult freed once its last row is decoded, before
                    # that row's JSON is written (it held the row a third time).
                    fields, last = range(res.nfields), res.ntuples - 1
                    for i in range(last + 1):
                        if size > conn.row_cap and \
                                sum([getlength(ptr, i, c) for c in fields]) > conn.row_cap:
                            raise over_cap(conn.connector, i, conn.row_cap, 1 << 62,
                                           conn.row_cap // 2)
                        if i < last:
                            yield tx.load_row(i, tuple)
                            continue
                        box = [tx.load_row(i, tuple)]
                        res.clear()
                        yield box.pop()  # (not held here while the caller writes it)
                else:
                    for i in range(res.ntuples):
                        yield tx.load_row(i, tuple)
            elif status != _TUPLES:
                raise _failed(conn, res)
            # _next(conn), written out (two per query)
            res = _WAIT(raw, fetch(conn)) if pgconn.is_busy() else pgconn.get_result()
        done = True
    finally:
        if not done and not conn.broken and raw.pgconn.transaction_status == _ACTIVE:
            # Leaving early: the server stops the query and what it sent is read and
            # dropped, a chunk at a time (the statement's deadline still armed: a server
            # that goes on sending is cut there).
            try:
                raw.cancel_safe(timeout=SIDE_TIMEOUT_S)
                _drain(conn)
            except Exception:
                conn.broken = True
        entry[3] = False  # Watchdog.disarm(entry), written out
