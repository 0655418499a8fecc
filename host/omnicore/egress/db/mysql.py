"""MySQL and MariaDB connectors through PyMySQL (specs/abi.md §4.10).

Statements use ``?`` placeholders; PyMySQL binds values on the client, so each ``?`` outside
a string, identifier or comment becomes PyMySQL's ``%s`` and the value is escaped by the
driver for the connection's character set and SQL mode (never by us). Multi-statements are
off. Rows are read unbuffered (``SSCursor``): a capped result is never whole in the host;
leaving it early closes the connection (the server ends the query when it cannot write).

A statement's deadline: MariaDB's ``max_statement_time`` on the server (the session's, set
when it changes), ``KILL QUERY`` from a side connection a little after it and, after that,
the socket's read and write timeouts (set in the kernel, as
:func:`omnicore.egress.db.mysql_wire.kernel_timeout` says why).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import socket
import ssl
import time
from collections.abc import Generator, Sequence
from typing import Any

import pymysql
import pymysql.cursors
from pymysql.constants import CR, SERVER_STATUS  # (no CLIENT.MULTI_STATEMENTS)

from omnicore.egress.db.base import (
    CLIENT_GRACE_S,
    HARD_GRACE_S,
    HOST_TIMES,
    SIDE_TIMEOUT_S,
    WATCHDOG,
    Watchdog,
    first_line,
    on_side,
    open_socket,
    server_timeout_ms,
    shut,
    timed_out,
)
from omnicore.egress.db.config import DbConnector, Target
from omnicore.egress.db.lifetime import mysql_leaves
from omnicore.egress.db.mysql_wire import (
    EOF_PACKET,
    ROW_SLACK,
    Raw,
    is_eof,
    kernel_timeout,
    parse_row,
)
from omnicore.egress.db.sql import Dialect, DriverConn, RowEncoder, error_line
from omnicore.egress.db.values import Json
from omnicore.egress.redact import Redactor
from omnicore.egress.refused import Refused

__all__ = ["MysqlDialect", "placeholders"]

# Strings, quoted identifiers and comments, which a ? inside does not make a placeholder;
# then a ? or a % (which PyMySQL's formatting would read).
_TOKENS = re.compile(r"""'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|`(?:[^`]|``)*`"""
                     r"|--[^\n]*|#[^\n]*|/\*.*?\*/|(\?)|(%)", re.DOTALL)
# Connection-level failures (the server is gone or never answered).
_LOST = frozenset({2003, 2006, 2013, 2055, 2002})
_COM_RESET_CONNECTION = 0x1F


@functools.lru_cache(maxsize=256)  # a plugin's statements are few literals, run again and again
def placeholders(sql: str) -> tuple[str, int]:
    """``sql`` with each ``?`` placeholder as ``%s`` and each other ``%`` doubled; the
    number of placeholders."""
    count = 0

    def swap(m: re.Match[str]) -> str:
        nonlocal count
        if m.group(1):
            count += 1
            return "%s"
        # (Inside a string or comment a % is PyMySQL's formatting's too.)
        return "%%" if m.group(2) else m.group(0).replace("%", "%%")

    return _TOKENS.sub(swap, sql), count


def _timed_out(exc: BaseException) -> bool:
    """Whether PyMySQL's ``exc`` is a statement's socket timing out: Python's timeout (its
    words), or the kernel's send timeout (a write's EAGAIN, which PyMySQL wraps)."""
    return "timed out" in str(exc) or isinstance(exc.__context__, BlockingIOError)


class _Conn(DriverConn["pymysql.connections.Connection[Any]"]):
    __slots__ = ("killer", "mariadb", "read_only", "sever", "sock_timeout_ms", "target",
                 "timeout_ms")

    def __init__(self, raw: pymysql.connections.Connection[Any], target: Target,
                 connector: DbConnector) -> None:
        super().__init__(raw, connector.statement_timeout_ms)
        self.target = target
        self.read_only = connector.read_only
        # What the watchdog calls at a deadline, made once rather than per statement: KILL
        # QUERY, then, when the statement outlived it (a procedure's handler), the cut.
        thread = int(raw.thread_id())
        self.killer = on_side(functools.partial(_kill, target, thread, "QUERY"))
        self.sever = functools.partial(_sever, self, thread)
        self.mariadb = "mariadb" in str(raw.get_server_info()).lower()
        self.timeout_ms = -1        # the session's max_statement_time as last set
        self.sock_timeout_ms = -1   # what the socket's timeout was set for

    def close_raw(self) -> None:
        self.raw._force_close()


# SHOW GRANTS' line of a role granted to the account: GRANT `role` TO `user`@`host`.
_ROLE_GRANT = re.compile(r"GRANT `([^`]+)` TO ")


def _quoted(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"

#: Privileges that reach past the connector's data: other accounts, the server's files,
#: processes, replication, other sessions (MariaDB 10.11's names).
_POWERS = ("SUPER", "FILE", "PROCESS", "RELOAD", "SHUTDOWN", "CREATE USER",
           "REPLICATION SLAVE", "REPLICATION CLIENT", "BINLOG MONITOR", "BINLOG ADMIN",
           "BINLOG REPLAY", "CONNECTION ADMIN", "READ_ONLY ADMIN", "REPLICATION MASTER ADMIN",
           "REPLICATION SLAVE ADMIN", "SET USER", "FEDERATED ADMIN", "SLAVE MONITOR",
           "CREATE TABLESPACE", "SHOW DATABASES")
#: Privileges that change or drop what neighbours share (a database's objects).
_OWNS = ("DROP", "ALTER", "CREATE", "CREATE ROUTINE", "ALTER ROUTINE", "TRIGGER", "EVENT",
         "INDEX", "REFERENCES", "CREATE VIEW")


def _mysql_privileges(lines: list[str]) -> tuple[list[str], list[str]]:
    """(powers, owns) in SHOW GRANTS' lines."""
    powers: list[str] = []
    owns: list[str] = []
    for line in lines:
        m = re.match(r"GRANT (.+?) ON (\S+) TO ", line)
        if m is None:
            continue
        privs = {p.strip().split("(")[0].strip() for p in m.group(1).split(",")}
        where = m.group(2)
        if "WITH GRANT OPTION" in line or "WITH ADMIN OPTION" in line:
            powers.append(f"GRANT OPTION on {where}")
        if "ALL PRIVILEGES" in privs:
            if where == "*.*":
                powers.append("ALL PRIVILEGES on *.* (SUPER, FILE, CREATE USER, ...)")
            else:
                owns.append(f"ALL PRIVILEGES on {where} (ALTER, DROP, ...)")
            continue
        powers += [p for p in _POWERS if p in privs]
        held = [p for p in _OWNS if p in privs]
        if held:
            owns.append(f"{', '.join(held)} on {where}")
    return sorted(set(powers)), sorted(set(owns))


def _kill(target: Target, thread: int, what: str) -> None:
    """``KILL QUERY`` or ``KILL CONNECTION`` of server thread ``thread``, from a side
    connection bounded by SIDE_TIMEOUT_S (run on a side thread: never the watchdog's)."""
    side = _open(target, None, time.monotonic() + SIDE_TIMEOUT_S)
    try:
        with side.cursor(pymysql.cursors.Cursor) as cur:
            cur.execute(f"KILL {what} {thread}")
    finally:
        side.close()


def _sever(conn: _Conn, thread: int) -> None:
    """Cut ``conn`` (the watchdog, when a statement outlived its KILL QUERY): its socket
    shut down here, so the call ends now, and its server thread killed from a side
    connection, so nothing of the statement keeps running on the server."""
    conn.killed = True
    shut(conn.raw._sock)
    on_side(functools.partial(_kill, conn.target, thread, "CONNECTION"))()


def _open(target: Target, connector: DbConnector | None, deadline: float
          ) -> pymysql.connections.Connection[Any]:
    """A connection, the whole of its opening (TCP, handshake, authentication, its setting
    statements) bounded by ``deadline``: PyMySQL's own timeouts are per read, so a server
    that answers a byte at a time, or not at all, would hold it forever."""
    side = connector is None
    context = _tls(target)
    raw = Raw(
        host=target.host, port=target.port, unix_socket=target.socket,
        user=target.user or "", password=target.password or "",
        database=target.database or None, charset="utf8mb4", autocommit=True,
        connect_timeout=max(0.001, deadline - time.monotonic()), defer_connect=True,
        init_command=("SET SESSION TRANSACTION READ ONLY"
                      if connector is not None and connector.read_only else None),
        read_timeout=SIDE_TIMEOUT_S if side else None,
        write_timeout=SIDE_TIMEOUT_S if side else None,
        cursorclass=pymysql.cursors.SSCursor, local_infile=False,
        # (PyMySQL's default without ssl is to try TLS unchecked and fall back: never.)
        ssl=context, ssl_disabled=context is None)
    raw.password_ok = target.password_ok
    if connector is not None:
        raw.connector = connector.name
        raw.packet_cap = connector.max_result_bytes + ROW_SLACK
        raw.budget = int(connector.max_result_bytes * HOST_TIMES)
    else:
        # A side connection (the deadline's KILL) reads a greeting and an OK: a spoofed
        # server answering it with 16 MiB frames for ever cost the host 740 MB before the
        # side's bound ended it (its packets had no cap).
        raw.packet_cap = ROW_SLACK
    sock = _socket(target, deadline)
    cut: list[bool] = []

    def expire() -> None:
        cut.append(True)
        shut(sock)

    entry = WATCHDOG.arm(deadline, expire)
    try:
        raw.connect(sock)
    except BaseException:
        if cut:
            raise TimeoutError("the server did not complete the connection in time") from None
        raise
    finally:
        Watchdog.disarm(entry)
    return raw


def _tls(target: Target) -> ssl.SSLContext | None:
    """The TLS of ``target``'s sslmode (libpq's names, specs/abi.md §4.12): none for
    ``disable``; encrypted but unchecked for ``require``; the chain checked against
    ``sslrootcert`` for ``verify-ca``; the chain (against the system's CAs without
    ``sslrootcert``) and the host name for ``verify-full``. PyMySQL refuses a server that
    offers no TLS when a context is given."""
    mode = target.sslmode
    if mode == "disable":
        return None
    context = ssl.create_default_context(cafile=target.sslrootcert)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if mode == "verify-full":
        return context
    context.check_hostname = False
    if mode == "require":
        context.verify_mode = ssl.CERT_NONE
    return context


def _socket(target: Target, deadline: float) -> socket.socket:
    """The connection's socket (PyMySQL's own opening of it, bounded by ``deadline``)."""
    try:
        sock = open_socket(target, deadline)
    except OSError as exc:
        # As PyMySQL raises it (its "refused" is what failure() tells apart).
        raise pymysql.err.OperationalError(
            CR.CR_CONN_HOST_ERROR, f"Can't connect to MySQL server ({exc})") from None
    if not target.socket:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


def _arg(value: Any) -> Any:
    if type(value) is Json:
        return value.text()
    if type(value) is dt.datetime and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)  # MySQL has no zones
    return value


class MysqlDialect(Dialect):
    """PyMySQL, autocommit connections, unbuffered reads."""

    def connect(self, target: Target, connector: DbConnector, deadline: float) -> _Conn:
        return _Conn(_open(target, connector, deadline), target, connector)

    def _prepare(self, conn: _Conn, sql: str, args: list[Any], deadline: float
                 ) -> tuple[str, list[Any]]:
        """The statement's text for PyMySQL and its watchdog entry (armed)."""
        text, count = placeholders(sql)
        if count != len(args):
            raise Refused("INVALID", f"the statement has {count} placeholders but "
                                     f"{len(args)} params were given")
        ms = server_timeout_ms(conn.limit_ms, deadline)
        sock = conn.raw._sock
        if sock is not None and ms != conn.sock_timeout_ms:
            # Past the server's timeout and the KILL QUERY after it: the last resort for a
            # server that answers neither. Set when it changes (each setting is a syscall).
            kernel_timeout(sock, ms / 1000 + 2 * CLIENT_GRACE_S + 1)
            conn.sock_timeout_ms = ms
        if conn.mariadb and ms != conn.timeout_ms:
            # The session's, set when it changes: a SET STATEMENT ... FOR prefix on every
            # statement costs the server more than this round trip now and then.
            with conn.raw.cursor(pymysql.cursors.Cursor) as cur:
                cur.execute(f"SET SESSION max_statement_time = {ms / 1000:.3f}")
            conn.timeout_ms = ms
        entry = WATCHDOG.arm(time.monotonic() + ms / 1000 + CLIENT_GRACE_S, conn.killer,
                             then=(HARD_GRACE_S, conn.sever))
        return text, entry

    def rows(self, conn: _Conn, sql: str, args: list[Any], deadline: float
             ) -> tuple[bytes, Generator[Sequence[Any], None, None], RowEncoder]:
        text, entry = self._prepare(conn, sql, args, deadline)
        raw = conn.raw
        try:
            # What an SSCursor's execute does, less the cursor: the values escaped by the
            # driver for the connection (never by us), the result read unbuffered.
            raw.query(text % tuple(map(raw.escape, map(_arg, args))), unbuffered=True)
        except BaseException:
            Watchdog.disarm(entry)
            raise
        result = raw._result
        columns, encode = result.shape
        return columns, _rows(conn, result, entry), encode

    def execute(self, conn: _Conn, sql: str, args: list[Any], deadline: float
                ) -> dict[str, Any]:
        text, entry = self._prepare(conn, sql, args, deadline)
        raw = conn.raw
        try:
            # Unbuffered, as rows() reads: a statement with rows (PyMySQL's cursor would hold
            # them all) has them counted as they come, one at a time, never held.
            raw.query(text % tuple(map(raw.escape, map(_arg, args))), unbuffered=True)
            result = raw._result
            if result.unbuffered_active:
                out: dict[str, Any] = {"rows_affected": _count(conn, _rows(conn, result,
                                                                             entry))}
            else:
                out = {"rows_affected": result.affected_rows}
                if result.insert_id:
                    out["last_insert_id"] = result.insert_id
                if result.has_next:
                    conn.broken = True  # (as _rows does: results left on the wire)
            return out
        finally:
            Watchdog.disarm(entry)

    def begin(self, conn: _Conn, read_only: bool, deadline: float) -> None:
        with conn.raw.cursor(pymysql.cursors.Cursor) as cur:
            cur.execute("START TRANSACTION READ ONLY" if read_only else "START TRANSACTION")

    def end(self, conn: _Conn, commit: bool, deadline: float) -> None:
        if commit:
            conn.raw.commit()
        else:
            conn.raw.rollback()

    def writable(self, conn: _Conn) -> str | None:
        with conn.raw.cursor(pymysql.cursors.Cursor) as cur:
            cur.execute("SHOW GRANTS FOR CURRENT_USER()")
            grants = " ".join(str(row[0]) for row in cur.fetchall())
        found = sorted({w for w in ("ALL PRIVILEGES", "INSERT", "UPDATE", "DELETE", "CREATE",
                                    "DROP", "ALTER") if re.search(rf"\b{w}\b", grants)})
        return ", ".join(found) or None

    def in_transaction(self, conn: _Conn) -> bool:
        status = conn.raw.server_status
        return bool(status & SERVER_STATUS.SERVER_STATUS_IN_TRANS) or not (
            status & SERVER_STATUS.SERVER_STATUS_AUTOCOMMIT)

    def privileges(self, conn: _Conn, deadline: float) -> tuple[list[str], list[str]]:
        with WATCHDOG.cut_at(deadline, conn.sever):
            with conn.raw.cursor(pymysql.cursors.Cursor) as cur:
                cur.execute("SHOW GRANTS FOR CURRENT_USER()")
                lines = [str(row[0]) for row in cur.fetchall()]
                # The roles it may SET ROLE to: their grants are its own too. MariaDB shows a
                # role's grants (and those of the roles granted it) only to a session where
                # it is enabled (error 1044 otherwise, on every role not the default one):
                # each is enabled for its SHOW, then the session's own role is restored.
                roles = [m.group(1) for line in lines
                         if (m := _ROLE_GRANT.match(line)) is not None][:16]
                if roles:
                    cur.execute("SELECT CURRENT_ROLE()")
                    row = cur.fetchone()
                    current = row[0] if row else None
                    try:
                        for role in roles:
                            cur.execute(f"SET ROLE {_quoted(role)}")
                            cur.execute(f"SHOW GRANTS FOR {_quoted(role)}")
                            lines += [str(row[0]) for row in cur.fetchall()]
                    finally:
                        cur.execute(f"SET ROLE {_quoted(current)}" if current
                                    else "SET ROLE NONE")
        return _mysql_privileges(lines)

    unchecked_hint = ("let the account read its grants and each of its roles' (SHOW GRANTS "
                      "FOR CURRENT_USER(); SET ROLE r; SHOW GRANTS FOR r) within the deadline")

    def answered(self, exc: BaseException) -> bool:
        # A server's error (1000-1999: ER_*), not the client's (2000-: CR_*, a connection
        # lost, a packet it could not read).
        code = exc.args[0] if isinstance(exc, pymysql.err.MySQLError) and exc.args else None
        return isinstance(code, int) and 1000 <= code < 2000

    def leaves(self, sql: str) -> bool:
        return mysql_leaves(sql)

    def clean(self, conn: _Conn, deadline: float) -> bool:
        raw = conn.raw
        if raw._sock is None:
            raise pymysql.err.InterfaceError(0, "closed")
        with WATCHDOG.cut_at(deadline, conn.sever):
            with raw.cursor(pymysql.cursors.Cursor) as cur:
                if self.in_transaction(conn):
                    # An XA transaction a procedure prepared survives the session (MariaDB
                    # 10.5+) and COM_RESET_CONNECTION: rolled back here, from the session
                    # that holds it (another session's is XAER_NOTA to this one).
                    cur.execute("XA RECOVER FORMAT='SQL'")
                    for row in cur.fetchall():
                        try:
                            cur.execute(f"XA ROLLBACK {row[3]}")
                        except pymysql.err.MySQLError:
                            pass  # not this session's
                cur.execute("DO RELEASE_ALL_LOCKS()")  # GET_LOCK's (MariaDB 10.5+, MySQL 5.7+)
        # Temporary tables, a role a procedure set: MariaDB lists neither cheaply, so the
        # session serves only this plugin from now on (closed rather than reset for another).
        return True

    def reset(self, conn: _Conn, deadline: float) -> None:
        raw = conn.raw
        with WATCHDOG.cut_at(deadline, conn.sever):  # a server that does not answer: cut
            # User variables, temporary tables, prepared statements, locks (GET_LOCK, LOCK
            # TABLES), an open transaction, every session variable (sql_mode, SET NAMES,
            # autocommit, ...) back to the server's defaults; the server's OK confirms it.
            raw._execute_command(_COM_RESET_CONNECTION, b"")
            raw._read_ok_packet()
            # Then what the host's connection sets at its opening, and the check that the
            # session is that one (the server's defaults may differ from ours).
            variable = "tx_read_only" if conn.mariadb else "transaction_read_only"
            with raw.cursor(pymysql.cursors.Cursor) as cur:
                cur.execute(f"SET NAMES utf8mb4, autocommit = 1, SESSION {variable} = "
                            f"{int(conn.read_only)}")
                check = ("SELECT @@character_set_client, @@character_set_connection, "
                         f"@@character_set_results, @@autocommit, @@session.{variable}, "
                         "DATABASE()" + (", CURRENT_ROLE()" if conn.mariadb else ""))
                cur.execute(check)
                got = cur.fetchone()
                if conn.mariadb and got is not None and got[-1] is not None:
                    # MariaDB's current role survives COM_RESET_CONNECTION (SET ROLE in a
                    # procedure): the next plugin would read with it.
                    cur.execute("SET ROLE NONE")
                    cur.execute(check)
                    got = cur.fetchone()
        want = ("utf8mb4", "utf8mb4", "utf8mb4", 1, int(conn.read_only),
                conn.target.database or None) + ((None,) if conn.mariadb else ())
        if got is None or tuple(got) != want:
            raise pymysql.err.OperationalError(
                0, f"the session after COM_RESET_CONNECTION is {got}, not {want}")
        conn.timeout_ms = -1  # max_statement_time: the server's default again

    def closed(self, conn: _Conn) -> bool:
        # PyMySQL closes the connection on a read or write that failed (a timeout among them)
        # and then answers every statement with InterfaceError(0, "").
        return conn.raw._sock is None

    def lost(self, exc: BaseException) -> bool:
        return isinstance(exc, pymysql.OperationalError) and bool(exc.args) and \
            exc.args[0] in (2006, 2013, 2055) and not _timed_out(exc)

    def failure(self, exc: BaseException, connector: str, redactor: Redactor
                ) -> Refused | None:
        if not isinstance(exc, pymysql.Error):
            if isinstance(exc, (TimeoutError, OSError)):
                return timed_out(connector)
            return None
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        message = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
        if code in (1969, 3024, 1317):  # max_statement_time, MAX_EXECUTION_TIME, KILL QUERY
            return timed_out(connector)
        if code == 1045:
            return Refused("DENIED", f"authentication failed for connector {connector}")
        if code in (1044, 1142, 1143, 1227):
            return Refused("DENIED", f"connector {connector}: {first_line(message, redactor)}")
        if code == 1792:  # ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION
            return Refused("DENIED", f"connector {connector} is read-only: "
                                     f"{first_line(message, redactor)}")
        if (code in (CR.CR_CONN_HOST_ERROR, CR.CR_SSL_CONNECTION_ERROR) and isinstance(
                exc.__cause__ or exc.__context__, ssl.SSLError)) or "SSL is required" in message:
            # TLS the URL's sslmode asks for did not happen (an unknown CA, another name, a
            # server without TLS): its reason, which says what to fix.
            why = exc.__cause__ or exc.__context__ or exc
            line = first_line(str(getattr(why, "verify_message", "") or why), redactor, 200)
            return Refused("UNAVAILABLE", f"connector {connector}: TLS failed ({line})")
        if code in _LOST or (isinstance(exc, pymysql.OperationalError) and code >= 2000):
            reason = ("connection refused" if code in (2003, 2002) and "refused" in message
                      else "statement timed out" if _timed_out(exc)
                      else "connection lost")
            return Refused("UNAVAILABLE", f"connector {connector}: {reason}")
        return Refused("INVALID", f"connector {connector}: {error_line(exc, redactor)}"
                       if not message else f"connector {connector}: "
                                           f"{first_line(message, redactor)}")


def _count(conn: _Conn, rows: Generator[Sequence[Any], None, None]) -> int:
    """The number of ``rows`` (an execute's: counted, never held, so each row's packet is
    bounded alone, not beside the ones before it)."""
    raw, count = conn.raw, 0
    for _ in rows:
        raw.held = 0
        count += 1
    return count


def _rows(conn: _Conn, result: Any, entry: list[Any]) -> Generator[Sequence[Any], None, None]:
    """The rows of an unbuffered result, read off the socket one at a time (PyMySQL's
    MySQLResult._read_rowdata_packet_unbuffered, less what nothing here reads: the result's
    ``rows`` and ``affected_rows`` per row)."""
    done = False
    try:
        if result.unbuffered_active:  # (not after a statement without a result set)
            read, converters = conn.raw._read_payload, result.converters
            data = read()
            while not is_eof(data):
                yield parse_row(data, converters)
                data = read()
            # MySQLResult._check_packet_is_eof, and the end of the unbuffered read.
            result.warning_count, status = EOF_PACKET.unpack_from(data)
            # (As PyMySQL's result does after its read: whether the statement left a
            # transaction open is read from it.)
            conn.raw.server_status = status
            result.has_next = status & SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS
            result.unbuffered_active = False
            result.connection = None
            result.rows = None
        if result.has_next:
            # More results follow (a procedure's, or a server out of step): no query reads
            # them, and PyMySQL would read each whole, unbounded, before the next statement;
            # the connection is closed instead of given back with them.
            conn.broken = True
        done = True
    finally:
        Watchdog.disarm(entry)
        if not done:
            # The rest of the result is still on the wire: draining it could take minutes,
            # so the connection is closed instead (and the result told it is over, or its
            # finaliser would read on from the closed socket).
            result.unbuffered_active = False
            conn.raw._result = None
            conn.broken = True
            conn.close()
