"""MySQL's wire as the MySQL connector reads it (:mod:`omnicore.egress.db.mysql`): PyMySQL's
connection and result with less Python around each packet and cell.

A query skips three of PyMySQL's costs a one-row query notices (bench/bench_connectors.py):
its cursor's row-by-row ``fetchmany`` (rows are read off the result directly), the parse of
the same column definitions on every run (a connection keeps the parsed columns of the
definitions' bytes it has seen, as the PostgreSQL dialect keeps a result's shape), and most
of the Python around each packet and cell (a one-row result is seven packets: Raw reads a
packet's bytes in one method, and parse_row parses a row's cells in one). Those reach into, or
do as, PyMySQL's connection and result; :func:`check_pymysql` says at import if a PyMySQL
no longer has what they rely on (pyproject.toml pins PyMySQL below 3).
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Callable
from typing import Any, NoReturn

import orjson
import pymysql
import pymysql.cursors
from pymysql import _auth
from pymysql.connections import MAX_PACKET_LEN, TEXT_TYPES, MySQLResult
from pymysql.constants import CR, FIELD_TYPE
from pymysql.protocol import EOFPacketWrapper, FieldDescriptorPacket, MysqlPacket

from omnicore.egress.db.base import SMALL_MESSAGE, over_cap, row_over_cap
from omnicore.egress.db.sql import RowEncoder, row_encoder
from omnicore.egress.db.values import cell
from omnicore.egress.refused import Refused

__all__ = ["EOF_PACKET", "ROW_SLACK", "Raw", "check_pymysql", "is_eof", "kernel_timeout",
           "parse_row"]

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
# A row's packet this much longer than max_result_bytes is over it whatever its cells are:
# a cell's JSON is at most 8 bytes shorter than its length prefix and bytes (a NULL's is
# longer), and a result has at most 4096 columns.
ROW_SLACK = 8 * 4096
_SHAPES_MAX = 256
_MAX_COLUMNS = 4096
#: What a result of the host's own statements may hold (buffered): a few rows.
_HOST_ANSWER_CAP = 1 << 20
# Authentication plugins that never show the server the password: a scramble of it with the
# server's salt (mysql_native_password), a signature (MariaDB's client_ed25519). Every other
# plugin hands the server the password (mysql_clear_password, dialog/PAM, sha256_password and
# caching_sha2_password's full authentication: in clear over TLS, or encrypted to a key the
# server itself sends) and is answered only over TLS that checked the server (verify-full).
# caching_sha2_password's fast path is a scramble too: tried, its full authentication refused.
_SCRAMBLES = frozenset({b"mysql_native_password", b"client_ed25519"})
_CACHING_SHA2 = b"caching_sha2_password"
_SHOWS_PASSWORD = frozenset({"sha256_password", "caching_sha2_password"})


#: A result's columns: PyMySQL's fields, (encoding, converter) pairs and description, and
#: ours: the JSON of the columns and the row encoder.
_Shape = tuple[list[Any], list[Any], Any, bytes, RowEncoder]


class _Result(MySQLResult):  # type: ignore[misc]
    """PyMySQL's result, its columns parsed once per connection and definitions' bytes."""

    connection: Any  # (PyMySQL's: a Raw, None once the result is read)

    def _read_load_local_packet(self, first_packet: Any) -> None:
        # The server asks for a file of the host (LOAD DATA LOCAL INFILE, or a spoofed
        # server's 0xFB packet after any statement): never sent (PyMySQL's local_infile is
        # off and the connector never asks for LOCAL_FILES); the connection, which waits
        # for the file now, is closed.
        conn = self.connection
        conn._force_close()
        raise Refused("UNAVAILABLE", f"connector {conn.connector}: the server asked for a "
                                     "local file (LOAD DATA LOCAL), which the connector never "
                                     "sends; the connection was closed")

    def _read_rowdata_packet(self) -> None:
        """PyMySQL's buffered read of a result's rows, bounded in bytes: only the host's
        own statements are read buffered (SHOW GRANTS at connect, XA RECOVER at the
        clean-up; a plugin's are unbuffered, bounded by _rows), and a spoofed server
        answering SHOW GRANTS with rows for ever cost the host 700 MB in 4 s."""
        conn = self.connection
        rows = []
        size = 0
        while True:
            packet = conn._read_packet()
            if self._check_packet_is_eof(packet):
                self.connection = None  # (PyMySQL's: no cycle)
                break
            size += len(packet._data)
            if size > _HOST_ANSWER_CAP:
                conn._force_close()
                raise pymysql.err.OperationalError(
                    CR.CR_SERVER_LOST, f"the server sent more than {_HOST_ANSWER_CAP} bytes "
                                       "in answer to a statement of the host; the connection "
                                       "was closed")
            rows.append(self._read_row_from_packet(packet))
        self.affected_rows = len(rows)
        self.rows = tuple(rows)

    #: The JSON of the columns and the row encoder (none: a statement without a result set).
    shape: tuple[bytes, RowEncoder] = (b"[]", row_encoder(()))

    def _get_descriptions(self) -> None:
        conn = self.connection
        if self.field_count > _MAX_COLUMNS:
            # A spoofed server's count (up to 2**64) and column definitions for ever: held
            # as they came until the deadline (GBs). MariaDB's results have 4096 at most.
            conn._force_close()
            raise pymysql.err.OperationalError(
                CR.CR_SERVER_LOST, f"protocol error: {self.field_count} columns announced "
                                   f"(at most {_MAX_COLUMNS}); the connection was closed")
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
        if not is_eof(read()):
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
#: the names its code must use). Raw._read_payload reads as Connection._read_packet and
#: _read_bytes do, _rows and parse_row as MySQLResult's unbuffered reading does: the attributes
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
    (MySQLResult, "_read_rowdata_packet",
     ("connection", "_read_packet", "_check_packet_is_eof", "_read_row_from_packet",
      "affected_rows", "rows")),
    (MySQLResult, "_check_packet_is_eof", ("is_eof_packet", "warning_count", "has_next")),
    (MySQLResult, "_read_row_from_packet", ("converters", "read_length_coded_string")),
    (EOFPacketWrapper, "__init__",
     ("read_struct", "warning_count", "server_status", "has_next",
      "SERVER_MORE_RESULTS_EXISTS")),
    # Raw judges the server's authentication where PyMySQL chooses it, and _Result refuses
    # a request for a local file where PyMySQL reads one.
    (pymysql.connections.Connection, "_request_authentication",
     ("_auth_plugin_name", "_get_auth_plugin_handler", "_process_auth")),
    (MySQLResult, "init_unbuffered_query", ("_read_load_local_packet",)),
    (MySQLResult, "read", ("_read_load_local_packet",)),
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


class Raw(pymysql.connections.Connection):  # type: ignore[misc]
    """A PyMySQL connection whose results are :class:`_Result`, reading its packets with
    less Python around them."""

    # PyMySQL 1.1 sets the socket's timeout once and has no _current_timeout (None == None
    # here); later ones switch between their read and write timeouts in _read_packet.
    _current_timeout: float | None = None
    _read_timeout: float | None = None
    #: The longest packet read (the connector's max_result_bytes and ROW_SLACK), and the
    #: connector's name for its refusal: a longer one is refused from its header, unread.
    packet_cap = 1 << 62
    connector = ""
    #: What a result may cost the host (HOST_TIMES its max_result_bytes), and the bytes of
    #: the packets read for the current statement's result (its rows' JSON, about): a packet
    #: that would take the one past the other, read, is refused from its header (PyMySQL
    #: holds a row three times while it is read: the packet, a cell's slice of it and its
    #: value, then the packet, the value and its JSON).
    budget = 1 << 62
    held = 0
    #: Whether the connection's TLS checked the server's certificate and host name
    #: (sslmode=verify-full), or the operator allowed the password to a server it did not
    #: (password_to_unverified_server: allow): only then does an authentication that shows
    #: the server the password go on.
    password_ok = False

    def __init__(self, **kwargs: Any) -> None:
        self.shapes: dict[tuple[bytes, ...], _Shape] = {}
        super().__init__(**kwargs)

    def _request_authentication(self) -> None:
        first: str = self._auth_plugin_name  # type: ignore[has-type]
        if not self.password_ok and first not in ("", "mysql_native_password",
                                               "caching_sha2_password"):
            # The server's first choice would have the password in the first answer
            # (sha256_password over TLS) or one PyMySQL does not answer: a native scramble
            # instead, and a switch the server asks for is judged by _process_auth.
            self._auth_plugin_name = ""
        super()._request_authentication()

    def _get_auth_plugin_handler(self, plugin_name: Any) -> Any:
        name = plugin_name.decode("ascii", "replace") if isinstance(plugin_name, bytes) \
            else plugin_name
        if not self.password_ok and name in _SHOWS_PASSWORD:
            return _FastPathOnly(self, name)
        return super()._get_auth_plugin_handler(plugin_name)

    def _process_auth(self, plugin_name: bytes, auth_packet: Any, handler: Any = None) -> Any:
        """PyMySQL's answer to the server's switch to ``plugin_name``, when the plugin never
        shows the password or the server is verified; refused otherwise (the password unsent).
        """
        if self.password_ok or plugin_name in _SCRAMBLES:
            return super()._process_auth(plugin_name, auth_packet,
                                         None if isinstance(handler, _FastPathOnly) else handler)
        if plugin_name == _CACHING_SHA2 and self.password:
            salt = auth_packet.read_all()
            self.salt = salt[:-1] if salt.endswith(b"\0") else salt
            self.write_packet(_auth.scramble_caching_sha2(self.password, self.salt))
            return _FastPathOnly(self, "caching_sha2_password").authenticate(
                self._read_packet())
        raise _shows_password(self.connector, plugin_name.decode("ascii", "replace"))

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
        held = self.held + length
        if length > SMALL_MESSAGE and (length > self.packet_cap or
                                       held + 2 * length > self.budget):
            self._too_large(length)
        self.held = held
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
        timeout (:func:`kernel_timeout`) passed first, which the buffered reader reports the
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
            total = length + len(frames) * MAX_PACKET_LEN  # (what is known of it so far)
            if total > self.packet_cap or self.held + 3 * total > self.budget:
                self._too_large(total, length == MAX_PACKET_LEN)
            frames.append(self._read(length))
            if length < MAX_PACKET_LEN:
                break
            header = self._read(4)
        data = b"".join(frames)
        self.held += len(data)
        if data[0] == 0xFF:
            self._failed(data)
        return data

    def _too_large(self, length: int, more: bool = False) -> NoReturn:
        """A packet of ``length`` bytes (``more``: or more, its next frames unread) over
        :attr:`packet_cap`, or that would take what the result costs past :attr:`budget`,
        refused before its bytes are read (the rest of the result is still on the wire: the
        connection is closed, the server's statement ends when it cannot write)."""
        self._force_close()
        if length <= self.packet_cap:
            raise row_over_cap(self.connector, length, 3, self.packet_cap - ROW_SLACK, more)
        raise over_cap(self.connector, 0, self.packet_cap, 1 << 62,
                       self.packet_cap - ROW_SLACK)

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
        self.held = 0
        result = _Result(self)
        if unbuffered:
            result.init_unbuffered_query()
        else:
            result.read()
        self._result = result
        if result.server_status is not None:
            self.server_status = result.server_status
        affected: int = result.affected_rows
        return affected


class _FastPathOnly:
    """The handler of caching_sha2_password and sha256_password on a connection whose
    server is not verified: the fast path's success is taken, anything that would need the
    password (full authentication, the server's public key) refused."""

    def __init__(self, conn: Raw, name: str) -> None:
        self.conn, self.name = conn, name

    def authenticate(self, pkt: Any) -> Any:
        data = pkt.get_all_data()
        if self.name == "caching_sha2_password" and data[:2] == b"\x01\x03":
            ok = self.conn._read_packet()  # (an error packet is raised by the read)
            if not ok.is_ok_packet():
                raise pymysql.err.OperationalError(
                    CR.CR_AUTH_PLUGIN_ERR, "caching sha2: no OK after the fast path")
            return ok
        raise _shows_password(self.conn.connector, self.name)


def _shows_password(connector: str, plugin: str) -> Refused:
    return Refused("DENIED", f"connector {connector}: the server asked for authentication "
                             f"{plugin[:64]!r}, which shows it the password; the password goes "
                             "only to a server TLS verified (sslmode=verify-full) or as a "
                             "scramble (mysql_native_password, ed25519): give the connector "
                             "sslmode=verify-full, change the account's plugin (ALTER USER ... "
                             "IDENTIFIED VIA mysql_native_password USING PASSWORD('...')), or "
                             f"set connectors.{connector}.password_to_unverified_server: allow")


def kernel_timeout(sock: socket.socket, seconds: float) -> None:
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


def _json_cell(value: Any) -> Any:
    if value is None:
        return None
    return {"$json": json.loads(value)}


def is_eof(data: bytes) -> bool:
    return data[0] == 0xFE and len(data) < 9  # (MysqlPacket.is_eof_packet)


EOF_PACKET = struct.Struct("<xhh")  # warnings, server status (EOFPacketWrapper)
_U16, _U24, _U64 = (struct.Struct(f).unpack_from for f in ("<H", "<HB", "<Q"))


def parse_row(data: bytes, converters: list[tuple[str | None, Any]]) -> tuple[Any, ...]:
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

