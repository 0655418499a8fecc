"""MySQL and MariaDB connectors through PyMySQL (specs/abi.md §4.10).

Statements use ``?`` placeholders; PyMySQL binds values on the client, so each ``?`` outside
a string, identifier or comment becomes PyMySQL's ``%s`` and the value is escaped by the
driver for the connection's character set and SQL mode (never by us). Multi-statements are
off. Rows are read unbuffered (``SSCursor``): a capped result is never whole in the host;
leaving it early closes the connection (the server ends the query when it cannot write).

A statement's deadline: MariaDB's ``max_statement_time`` on the server (the session's, set
when it changes), ``KILL QUERY`` from a side connection a little after it and, after that,
the socket's read and write timeouts (set in the kernel, as :func:`_kernel_timeout` says
why).

A query skips three of PyMySQL's costs a one-row query notices (bench/bench_connectors.py):
its cursor's row-by-row ``fetchmany`` (rows are read off the result directly), the parse of
the same column definitions on every run (a connection keeps the parsed columns of the
definitions' bytes it has seen, as the PostgreSQL dialect keeps a result's shape), and most
of the Python around each packet and cell (a one-row result is seven packets: _Raw reads a
packet's bytes in one method, and _row parses a row's cells in one). Those reach into, or
do as, PyMySQL's connection and result; :func:`check_pymysql` says at import if a PyMySQL
no longer has what they rely on (pyproject.toml pins PyMySQL below 3).
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import re
import socket
import struct
import time
from collections.abc import Callable, Generator, Sequence
from typing import Any, NoReturn

import orjson
import pymysql
import pymysql.cursors
from pymysql.connections import MAX_PACKET_LEN, TEXT_TYPES, MySQLResult
from pymysql.constants import CR, FIELD_TYPE, SERVER_STATUS  # (no CLIENT.MULTI_STATEMENTS)
from pymysql.protocol import EOFPacketWrapper, FieldDescriptorPacket, MysqlPacket

from omnicore.egress.db.base import (
    CLIENT_GRACE_S,
    HARD_GRACE_S,
    SIDE_TIMEOUT_S,
    WATCHDOG,
    Watchdog,
    first_line,
    on_side,
    over_cap,
    server_timeout_ms,
    timed_out,
)
from omnicore.egress.db.config import DbConnector, Target
from omnicore.egress.db.sql import Dialect, DriverConn, RowEncoder, error_line, row_encoder
from omnicore.egress.db.values import Json, cell
from omnicore.egress.redact import Redactor
from omnicore.egress.refused import Refused

__all__ = ["MysqlDialect", "check_pymysql", "placeholders"]

# Strings, quoted identifiers and comments, which a ? inside does not make a placeholder;
# then a ? or a % (which PyMySQL's formatting would read).
_TOKENS = re.compile(r"""'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|`(?:[^`]|``)*`"""
                     r"|--[^\n]*|#[^\n]*|/\*.*?\*/|(\?)|(%)", re.DOTALL)
_TYPES = {FIELD_TYPE.TINY: "tinyint", FIELD_TYPE.SHORT: "smallint", FIELD_TYPE.LONG: "int",
          FIELD_TYPE.INT24: "mediumint", FIELD_TYPE.LONGLONG: "bigint",
          FIELD_TYPE.FLOAT: "float", FIELD_TYPE.DOUBLE: "double",
          FIELD_TYPE.DECIMAL: "decimal", FIELD_TYPE.NEWDECIMAL: "decimal",
          FIELD_TYPE.VARCHAR: "varchar", FIELD_TYPE.VAR_STRING: "varchar",
          FIELD_TYPE.STRING: "char", FIELD_TYPE.BLOB: "blob", FIELD_TYPE.TINY_BLOB: "blob",
          FIELD_TYPE.MEDIUM_BLOB: "blob", FIELD_TYPE.LONG_BLOB: "blob",
          FIELD_TYPE.JSON: "json", FIELD_TYPE.DATE: "date", FIELD_TYPE.NEWDATE: "date",
          FIELD_TYPE.TIME: "time", FIELD_TYPE.DATETIME: "datetime",
          FIELD_TYPE.TIMESTAMP: "timestamp", FIELD_TYPE.YEAR: "year", FIELD_TYPE.BIT: "bit",
          FIELD_TYPE.NULL: "null", FIELD_TYPE.ENUM: "enum", FIELD_TYPE.SET: "set",
          FIELD_TYPE.GEOMETRY: "geometry"}
# Columns PyMySQL reads as JSON data already (integers and text; a binary string's bytes
# are not text, so a column of a binary collation goes through cell()).
_PLAIN = frozenset({FIELD_TYPE.TINY, FIELD_TYPE.SHORT, FIELD_TYPE.LONG, FIELD_TYPE.INT24,
                    FIELD_TYPE.LONGLONG, FIELD_TYPE.NULL})
# Connection-level failures (the server is gone or never answered).
_LOST = frozenset({2003, 2006, 2013, 2055, 2002})
_COM_RESET_CONNECTION = 0x1F
# A row's packet this much longer than max_result_bytes is over it whatever its cells are:
# a cell's JSON is at most 8 bytes shorter than its length prefix and bytes (a NULL's is
# longer), and a result has at most 4096 columns.
_ROW_SLACK = 8 * 4096


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


_SHAPES_MAX = 256


#: A result's columns: PyMySQL's fields, (encoding, converter) pairs and description, and
#: ours: the JSON of the columns and the row encoder.
_Shape = tuple[list[Any], list[Any], Any, bytes, RowEncoder]


class _Result(MySQLResult):  # type: ignore[misc]
    """PyMySQL's result, its columns parsed once per connection and definitions' bytes."""

    #: The JSON of the columns and the row encoder (none: a statement without a result set).
    shape: tuple[bytes, RowEncoder] = (b"[]", row_encoder(()))

    def _get_descriptions(self) -> None:
        conn = self.connection
        read = conn._read_payload
        key = tuple([read() for _ in range(self.field_count)])
        shapes = conn.shapes
        known = shapes.get(key)
        if known is None:
            if len(shapes) >= _SHAPES_MAX:
                shapes.clear()
            known = shapes[key] = _columns(conn, key)
        self.fields, self.converters, self.description, columns, encode = known
        self.shape = columns, encode
        if not _is_eof(read()):
            raise pymysql.err.InternalError("protocol error: no EOF after the columns")


def _columns(conn: Any, packets: tuple[bytes, ...]) -> _Shape:
    """The shape of a result's column definitions: PyMySQL's part as
    MySQLResult._get_descriptions makes it (from packets already read), and ours."""
    fields, converters, description = [], [], []
    columns: list[dict[str, Any]] = []
    convert: list[Callable[[Any], Any] | None] = []
    encoding_of = conn.encoding
    for data in packets:
        field = FieldDescriptorPacket(data, encoding_of)
        fields.append(field)
        description.append(field.description())
        kind = field.type_code
        encoding: str | None
        if not conn.use_unicode:
            encoding = None
        elif kind == FIELD_TYPE.JSON:
            encoding = encoding_of
        elif kind in TEXT_TYPES:
            encoding = None if field.charsetnr == 63 else encoding_of  # 63: binary
        else:
            encoding = "ascii"
        converter = conn.decoders.get(kind)
        if converter is pymysql.converters.through:
            converter = None
        converters.append((encoding, converter))
        columns.append({"name": field.name, "type": _TYPES.get(kind, str(kind))})
        # Text PyMySQL decodes and leaves as it is (not a binary string's bytes, not JSON)
        # is JSON data already, as integers are.
        text = kind in TEXT_TYPES and encoding is not None and converter is None
        convert.append(_json_cell if kind == FIELD_TYPE.JSON
                       else None if kind in _PLAIN or text else cell)
    return (fields, converters, tuple(description), orjson.dumps(columns),
            row_encoder(convert))


#: What of PyMySQL's private side this module uses or does as PyMySQL does it: (class, method,
#: the names its code must use). _Raw._read_payload reads as Connection._read_packet and
#: _read_bytes do, _rows and _row as MySQLResult's unbuffered reading does: the attributes
#: they read and set must still be the ones PyMySQL's own read and set.
_PRIVATE = (
    (pymysql.connections.Connection, "_read_packet",
     ("_read_bytes", "_next_seq_id", "_force_close", "_result", "unbuffered_active",
      "encoding", "is_error_packet", "raise_for_error")),
    (pymysql.connections.Connection, "_read_bytes", ("_rfile", "_force_close")),
    (pymysql.connections.Connection, "_read_query_result", ("_result", "server_status")),
    (MySQLResult, "_get_descriptions",
     ("field_count", "fields", "converters", "description", "_read_packet")),
    (MySQLResult, "_read_rowdata_packet_unbuffered",
     ("unbuffered_active", "_read_packet", "_check_packet_is_eof", "_read_row_from_packet",
      "connection", "rows")),
    (MySQLResult, "_check_packet_is_eof", ("is_eof_packet", "warning_count", "has_next")),
    (MySQLResult, "_read_row_from_packet", ("converters", "read_length_coded_string")),
    (EOFPacketWrapper, "__init__",
     ("read_struct", "warning_count", "server_status", "has_next",
      "SERVER_MORE_RESULTS_EXISTS")),
)


def check_pymysql() -> None:
    """Raise ImportError unless PyMySQL's connection and result still have the private
    methods this module overrides or calls, using the names it relies on."""
    for cls, method, names in _PRIVATE:
        code = getattr(getattr(cls, method, None), "__code__", None)
        missing = [method] if code is None else [n for n in names if n not in code.co_names]
        if missing:
            raise ImportError(
                f"PyMySQL {pymysql.VERSION_STRING}: {cls.__name__}.{method} is not what the MySQL "
                f"connector reads packets through (missing: {', '.join(missing)}); install a "
                "PyMySQL from 1.1 to 2.x (pip install 'pymysql>=1.1,<3')")


check_pymysql()


class _Raw(pymysql.connections.Connection):  # type: ignore[misc]
    """A PyMySQL connection whose results are :class:`_Result`, reading its packets with
    less Python around them."""

    # PyMySQL 1.1 sets the socket's timeout once and has no _current_timeout (None == None
    # here); later ones switch between their read and write timeouts in _read_packet.
    _current_timeout: float | None = None
    _read_timeout: float | None = None
    #: The longest packet read (the connector's max_result_bytes and _ROW_SLACK), and the
    #: connector's name for its refusal: a longer one is refused from its header, unread.
    packet_cap = 1 << 62
    connector = ""

    def __init__(self, **kwargs: Any) -> None:
        self.shapes: dict[tuple[bytes, ...], _Shape] = {}
        super().__init__(**kwargs)

    def _read_packet(self, packet_type: Any = MysqlPacket) -> Any:
        if self._current_timeout != self._read_timeout:
            return super()._read_packet(packet_type)  # it sets the timeout (nothing read yet)
        return packet_type(self._read_payload(), self.encoding)

    def _read_payload(self) -> bytes:
        """The next packet's bytes, as PyMySQL's _read_packet reads them (an error packet
        raised), for a packet of one frame (below 16 MiB: all but huge rows) in one Python
        frame instead of four: _read_bytes's reads inline (its failures as it raises them,
        by _lost and _short), the header read as bytes rather than through struct."""
        read = self._rfile.read
        try:
            header = read(4)
        except BaseException as exc:
            self._lost(exc)
        if header is None or len(header) < 4:
            self._short()
        length = header[0] | header[1] << 8 | header[2] << 16
        seq: int = self._next_seq_id  # type: ignore[has-type]
        if header[3] != seq or length == MAX_PACKET_LEN:
            return self._read_frames(header)
        if length > self.packet_cap:
            self._too_large()
        self._next_seq_id = (seq + 1) % 256
        try:
            data = read(length)
        except BaseException as exc:
            self._lost(exc)
        if data is None or len(data) < length:
            self._short()
        if data[0] == 0xFF:  # (MysqlPacket.is_error_packet)
            self._failed(data)
        return data  # type: ignore[no-any-return]

    def _read(self, n: int) -> bytes:
        """``n`` bytes off the connection (PyMySQL's _read_bytes, and the kernel's timeout)."""
        try:
            data = self._rfile.read(n)
        except BaseException as exc:
            self._lost(exc)
        if data is None or len(data) < n:
            self._short()
        return data  # type: ignore[no-any-return]

    def _lost(self, exc: BaseException) -> NoReturn:
        """Raise what PyMySQL's _read_bytes raises when a read fails (``exc``, being handled),
        the connection closed. (Its retry on EINTR is Python's own since 3.5.)"""
        self._force_close()
        if isinstance(exc, OSError):
            raise pymysql.err.OperationalError(
                CR.CR_SERVER_LOST, f"Lost connection to MySQL server during query ({exc})")
        raise exc

    def _short(self) -> NoReturn:
        """A read came back short: the server closed the connection, or the kernel's receive
        timeout (:func:`_kernel_timeout`) passed first, which the buffered reader reports the
        same way. Raised as PyMySQL raises either (a socket timeout's words for the second),
        the connection closed."""
        why = " (timed out)" if _waiting(self._sock) else ""
        self._force_close()
        raise pymysql.err.OperationalError(
            CR.CR_SERVER_LOST, f"Lost connection to MySQL server during query{why}")

    def _read_frames(self, header: bytes) -> bytes:
        """A packet the one-frame path leaves: out of sequence, or of 16 MiB or more, which
        the protocol splits into frames of 0xFFFFFF bytes ended by a shorter one."""
        frames: list[bytes] = []
        while True:
            if header[3] != self._next_seq_id:
                self._out_of_sequence(header[3])
            self._next_seq_id = (self._next_seq_id + 1) % 256
            length = header[0] | header[1] << 8 | header[2] << 16
            if length + len(frames) * MAX_PACKET_LEN > self.packet_cap:
                self._too_large()
            frames.append(self._read(length))
            if length < MAX_PACKET_LEN:
                break
            header = self._read(4)
        data = b"".join(frames)
        if data[0] == 0xFF:
            self._failed(data)
        return data

    def _too_large(self) -> NoReturn:
        """A packet over :attr:`packet_cap`, refused before its bytes are read (the rest of
        the result is still on the wire: the connection is closed, the server's statement
        ends when it cannot write)."""
        self._force_close()
        raise over_cap(self.connector, 0, self.packet_cap, 1 << 62,
                       self.packet_cap - _ROW_SLACK)

    def _out_of_sequence(self, got: int) -> NoReturn:
        """The connection is out of step with the server: closed, and raised as PyMySQL
        raises it (a server going down answers with sequence 0: a lost connection)."""
        self._force_close()
        if got == 0:
            raise pymysql.err.OperationalError(
                CR.CR_SERVER_LOST, "Lost connection to MySQL server during query")
        raise pymysql.err.InternalError(
            f"packet sequence {got} where {self._next_seq_id} was due")

    def _failed(self, data: bytes) -> NoReturn:
        """Raise the server's error in packet ``data`` (PyMySQL's _read_packet)."""
        if self._result is not None and self._result.unbuffered_active is True:
            self._result.unbuffered_active = False
        MysqlPacket(data, self.encoding).raise_for_error()
        raise AssertionError("unreachable")

    def _read_query_result(self, unbuffered: bool = False) -> int:
        # PyMySQL's own, with its result class swapped.
        self._result = None
        result = _Result(self)
        if unbuffered:
            result.init_unbuffered_query()
        else:
            result.read()
        self._result = result
        if result.server_status is not None:
            self.server_status = result.server_status
        return result.affected_rows  # type: ignore[no-any-return]


def _kernel_timeout(sock: socket.socket, seconds: float) -> None:
    """Bound each read and write on ``sock`` by ``seconds`` in the kernel (SO_RCVTIMEO,
    SO_SNDTIMEO). Python's own socket timeout would do the same, but it polls the socket
    before every read and write: two system calls more per statement."""
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1_000_000))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)


def _waiting(sock: socket.socket | None) -> bool:
    """Whether ``sock`` is still open from the server's side (a read that came short ran out
    of time rather than into the end of the stream)."""
    if sock is None:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) != b""
    except BlockingIOError:
        return True  # open, and nothing to read
    except OSError:
        return False


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
    _shut(conn.raw._sock)
    on_side(functools.partial(_kill, conn.target, thread, "CONNECTION"))()


def _shut(sock: socket.socket | None) -> None:
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)  # a read blocked on it returns at once
        except OSError:
            pass


def _open(target: Target, connector: DbConnector | None, deadline: float
          ) -> pymysql.connections.Connection[Any]:
    """A connection, the whole of its opening (TCP, handshake, authentication, its setting
    statements) bounded by ``deadline``: PyMySQL's own timeouts are per read, so a server
    that answers a byte at a time, or not at all, would hold it forever."""
    side = connector is None
    raw = _Raw(
        host=target.host, port=target.port, unix_socket=target.socket,
        user=target.user or "", password=target.password or "",
        database=target.database or None, charset="utf8mb4", autocommit=True,
        connect_timeout=max(0.001, deadline - time.monotonic()), defer_connect=True,
        init_command=("SET SESSION TRANSACTION READ ONLY"
                      if connector is not None and connector.read_only else None),
        read_timeout=SIDE_TIMEOUT_S if side else None,
        write_timeout=SIDE_TIMEOUT_S if side else None,
        cursorclass=pymysql.cursors.SSCursor)
    if connector is not None:
        raw.connector = connector.name
        raw.packet_cap = connector.max_result_bytes + _ROW_SLACK
    sock = _socket(target, deadline)
    cut: list[bool] = []

    def expire() -> None:
        cut.append(True)
        _shut(sock)

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


def _socket(target: Target, deadline: float) -> socket.socket:
    """The connection's socket (PyMySQL's own opening of it, bounded by ``deadline``)."""
    left = max(0.001, deadline - time.monotonic())
    try:
        if target.socket:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(left)
                sock.connect(target.socket)
            except BaseException:
                sock.close()
                raise
            return sock
        sock = socket.create_connection((target.host, target.port), left)
    except OSError as exc:
        # As PyMySQL raises it (its "refused" is what failure() tells apart).
        raise pymysql.err.OperationalError(
            CR.CR_CONN_HOST_ERROR, f"Can't connect to MySQL server ({exc})") from None
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    return sock


def _arg(value: Any) -> Any:
    if type(value) is Json:
        return value.text()
    if type(value) is dt.datetime and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)  # MySQL has no zones
    return value


def _json_cell(value: Any) -> Any:
    if value is None:
        return None
    return {"$json": json.loads(value)}


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
            _kernel_timeout(sock, ms / 1000 + 2 * CLIENT_GRACE_S + 1)
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
        try:
            cur = conn.raw.cursor(pymysql.cursors.Cursor)
            affected = cur.execute(text, list(map(_arg, args)))
            out: dict[str, Any] = {"rows_affected": affected}
            if cur.lastrowid:
                out["last_insert_id"] = cur.lastrowid
            cur.close()
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

    def reset(self, conn: _Conn, deadline: float) -> None:
        raw = conn.raw
        entry = WATCHDOG.arm(deadline, conn.sever)  # a server that does not answer: cut
        try:
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
                cur.execute("SELECT @@character_set_client, @@character_set_connection, "
                            f"@@character_set_results, @@autocommit, @@session.{variable}, "
                            "DATABASE()")
                got = cur.fetchone()
        finally:
            Watchdog.disarm(entry)
        want = ("utf8mb4", "utf8mb4", "utf8mb4", 1, int(conn.read_only),
                conn.target.database or None)
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
        if code in _LOST or (isinstance(exc, pymysql.OperationalError) and code >= 2000):
            reason = ("connection refused" if code in (2003, 2002) and "refused" in message
                      else "statement timed out" if _timed_out(exc)
                      else "connection lost")
            return Refused("UNAVAILABLE", f"connector {connector}: {reason}")
        return Refused("INVALID", f"connector {connector}: {error_line(exc, redactor)}"
                       if not message else f"connector {connector}: "
                                           f"{first_line(message, redactor)}")


def _rows(conn: _Conn, result: Any, entry: list[Any]) -> Generator[Sequence[Any], None, None]:
    """The rows of an unbuffered result, read off the socket one at a time (PyMySQL's
    MySQLResult._read_rowdata_packet_unbuffered, less what nothing here reads: the result's
    ``rows`` and ``affected_rows`` per row)."""
    done = False
    try:
        if result.unbuffered_active:  # (not after a statement without a result set)
            read, converters = conn.raw._read_payload, result.converters
            data = read()
            while not _is_eof(data):
                yield _row(data, converters)
                data = read()
            # MySQLResult._check_packet_is_eof, and the end of the unbuffered read.
            result.warning_count, status = _EOF.unpack_from(data)
            # (As PyMySQL's result does after its read: whether the statement left a
            # transaction open is read from it.)
            conn.raw.server_status = status
            result.has_next = status & SERVER_STATUS.SERVER_MORE_RESULTS_EXISTS
            result.unbuffered_active = False
            result.connection = None
            result.rows = None
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


def _is_eof(data: bytes) -> bool:
    return data[0] == 0xFE and len(data) < 9  # (MysqlPacket.is_eof_packet)


_EOF = struct.Struct("<xhh")  # warnings, server status (EOFPacketWrapper)
_U16, _U24, _U64 = (struct.Struct(f).unpack_from for f in ("<H", "<HB", "<Q"))


def _row(data: bytes, converters: list[tuple[str | None, Any]]) -> tuple[Any, ...]:
    """A text-protocol row as PyMySQL's MySQLResult._read_row_from_packet reads it (each
    cell a length-coded string, decoded and converted), without a packet object and its
    three method calls per cell (tests/capabilities/test_sql_mysql.py holds the two side by
    side)."""
    row: list[Any] = []
    pos, end = 0, len(data)
    for encoding, converter in converters:
        if pos >= end:
            break  # fewer cells than columns: PyMySQL stops there too
        size = data[pos]
        pos += 1
        if size >= 251:
            if size == 252:
                size = _U16(data, pos)[0]
                pos += 2
            elif size == 253:
                low, high = _U24(data, pos)
                size = low + (high << 16)
                pos += 3
            elif size == 254:
                size = _U64(data, pos)[0]
                pos += 8
            else:  # 251 is NULL; PyMySQL reads 255 as NULL too
                row.append(None)
                continue
        value: Any = data[pos:pos + size]
        if len(value) != size:  # the error class PyMySQL's packet reader raises here
            raise AssertionError(f"a row's cell of {size} bytes at {pos} runs past the end of "
                                 f"its {end}-byte packet")
        pos += size
        if encoding is not None:
            value = value.decode(encoding)
        if converter is not None:
            value = converter(value)
        row.append(value)
    return tuple(row)
