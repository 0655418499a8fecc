"""PostgreSQL connectors through psycopg 3 (specs/abi.md §4.10).

Statements keep PostgreSQL's own ``$1`` placeholders (psycopg's ``RawCursor``): the values
travel apart from the text, bound by the server. Rows are streamed (``Cursor.stream``, in
chunks), so a capped result never sits whole in the host; leaving the stream early cancels
the query. A statement's timeout is the server's ``statement_timeout``, set only when it
changes (a SET costs a round trip), and the watchdog cancels it from the client too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import errors as pgerrors

from omnicore.egress.db.base import (
    CLIENT_GRACE_S,
    WATCHDOG,
    Watchdog,
    first_line,
    statement_ms,
    timed_out,
)
from omnicore.egress.db.config import DbConnector, Target
from omnicore.egress.db.sql import Dialect, DriverConn, error_line
from omnicore.egress.db.values import Json, cell
from omnicore.egress.redact import Redactor
from omnicore.egress.refused import Refused

__all__ = ["PostgresDialect"]

_STREAM_CHUNK = 256
# A statement's server timeout is rounded down to this many ms, so consecutive calls of a
# plugin (each with a little less time left) mostly find the value already set.
_TIMEOUT_STEP_MS = 50


class _Conn(DriverConn["psycopg.Connection[Any]"]):
    __slots__ = ("timeout_ms",)

    def __init__(self, raw: psycopg.Connection[Any], limit_ms: int) -> None:
        super().__init__(raw, limit_ms)
        self.timeout_ms = -1        # the server's statement_timeout as last set

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
        }
        if connector.read_only:
            kwargs["options"] = "-c default_transaction_read_only=on"
        raw = psycopg.connect(**{k: v for k, v in kwargs.items() if v is not None})
        return _Conn(raw, connector.statement_timeout_ms)

    def _timeout(self, conn: _Conn, deadline: float) -> tuple[float, list[Any]]:
        """Set the statement's server timeout; arm the client's. (its deadline, the entry)."""
        raw = conn.raw
        left_ms = statement_ms(deadline)
        limit = conn.limit_ms
        ms = limit if limit <= left_ms else max(1, left_ms // _TIMEOUT_STEP_MS
                                               * _TIMEOUT_STEP_MS or left_ms)
        if ms != conn.timeout_ms:
            raw.execute(f"SET statement_timeout = {int(ms)}")
            conn.timeout_ms = ms
        ends = time.monotonic() + ms / 1000
        return ends, WATCHDOG.arm(ends + CLIENT_GRACE_S, raw.cancel_safe)

    def rows(self, conn: _Conn, sql: str, args: list[Any], deadline: float
             ) -> tuple[list[dict[str, Any]], Iterator[Sequence[Any]], list[Callable[[Any], Any]]]:
        _, entry = self._timeout(conn, deadline)
        cur = conn.raw.cursor()
        stream = cur.stream(sql, [_arg(a) for a in args], size=_STREAM_CHUNK)
        try:
            first = next(stream, None)
        except BaseException:
            Watchdog.disarm(entry)
            raise
        columns, convert = _columns(conn.raw, cur.description or [])
        return columns, _rows(first, stream, entry), convert

    def execute(self, conn: _Conn, sql: str, args: list[Any], deadline: float
                ) -> dict[str, Any]:
        _, entry = self._timeout(conn, deadline)
        try:
            cur = conn.raw.execute(sql, [_arg(a) for a in args])
            return {"rows_affected": max(cur.rowcount, 0)}
        finally:
            Watchdog.disarm(entry)

    def begin(self, conn: _Conn, read_only: bool, deadline: float) -> None:
        conn.raw.execute("BEGIN READ ONLY" if read_only else "BEGIN")

    def end(self, conn: _Conn, commit: bool, deadline: float) -> None:
        conn.raw.execute("COMMIT" if commit else "ROLLBACK")
        if conn.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
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


def _rows(first: Any, stream: Iterator[Any], entry: list[Any]) -> Iterator[Sequence[Any]]:
    try:
        if first is None:
            return
        yield first
        yield from stream
    finally:
        Watchdog.disarm(entry)
        close = getattr(stream, "close", None)
        if close is not None:
            close()  # leaving early: psycopg cancels the rest of the query


def _columns(raw: psycopg.Connection[Any], description: Sequence[Any]
             ) -> tuple[list[dict[str, Any]], list[Callable[[Any], Any]]]:
    columns: list[dict[str, Any]] = []
    convert: list[Callable[[Any], Any]] = []
    types = raw.adapters.types
    for col in description:
        info = types.get(col.type_code)
        name = info.name if info is not None else str(col.type_code)
        columns.append({"name": col.name, "type": name})
        convert.append(_json_cell if name in ("json", "jsonb") else cell)
    return columns, convert
