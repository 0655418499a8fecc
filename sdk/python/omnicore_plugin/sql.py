"""SQL on PostgreSQL and MySQL/MariaDB through a connector the operator declared and granted
(``omnicore:sql``; grant ``sql: {connectors: [orders]}``, specs/abi.md §4.10).

    from omnicore_plugin import sql

    db = sql.connect("orders")
    rows = db.query("select sku, qty from stock where sku = $1", [sku])
    rows[0]["qty"]                        # a Row: by column name, or by index
    db.execute("update stock set qty = qty - $1 where sku = $2", [n, sku]).rows_affected
    with db.transaction() as tx:          # committed at the end, rolled back on an exception
        tx.execute("insert into orders (sku, qty) values ($1, $2)", [sku, n])

**Statements are constants.** The statement is the plugin's own string literal; every value
goes in ``params`` (PostgreSQL ``$1, $2, …``, MySQL/MariaDB ``?``), so no input can become
SQL. ``omnicore build`` and ``omnicore test`` refuse a plugin whose statement is anything but
a string literal, a ``+`` of literals, or a module-level name bound once to one (an f-string,
``%``, ``.format()``, a parameter or a local is refused, with its file and line); the
parameter is typed :data:`typing.LiteralString`, so pyright flags the same in an editor
(specs/abi.md §4.10.1).

Parameters: None, bool, int, float, str, bytes, :class:`datetime.datetime` (a timestamp),
:class:`datetime.date`, :class:`datetime.time`, :class:`decimal.Decimal`, and :class:`Json`
for a JSON document (a bare dict or list is refused). Cells come back as the same Python
types. Refusals raise :class:`~omnicore_plugin.HostError` with ``code`` ``DENIED``,
``UNAVAILABLE``, ``INVALID`` (the database's own message), ``TOO_LARGE`` or ``QUOTA``.

A transaction lives within the plugin call: one the call leaves open is rolled back by the
host (at most ``max_transactions``, default 2, per call: ``QUOTA``).
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, LiteralString

from omnicore_plugin._binding import Binding
from omnicore_plugin._errors import HostError

__all__ = ["Column", "Connection", "Executed", "Json", "Row", "Rows", "Transaction",
           "connect"]

_host = Binding("sql")


@dataclass(frozen=True)
class Json:
    """A JSON document as a parameter (``json``/``jsonb``); cells of those types come back
    as :class:`Json` too."""

    value: Any


@dataclass(frozen=True)
class Column:
    """A result column: its name and the database's type name (``int4``, ``text``, ...)."""

    name: str
    type: str


class Row(Sequence[Any]):
    """One row: ``row["qty"]`` by column name, ``row[0]`` by position."""

    def __init__(self, names: dict[str, int], values: list[Any]) -> None:
        self._names = names
        self._values = values

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return self._values[self._names[key]]
        return self._values[key]

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Row({self.as_dict()!r})"

    def as_dict(self) -> dict[str, Any]:
        """The row as ``{column: value}``."""
        return {name: self._values[i] for name, i in self._names.items()}


class Rows(Sequence[Row]):
    """What a query returned: its :attr:`columns` and its rows, in order."""

    def __init__(self, columns: list[Column], values: list[list[Any]]) -> None:
        self.columns = columns
        names = {c.name: i for i, c in enumerate(columns)}
        self._rows = [Row(names, v) for v in values]

    def __getitem__(self, index: Any) -> Any:
        return self._rows[index]

    def __len__(self) -> int:
        return len(self._rows)

    def __iter__(self) -> Iterator[Row]:
        return iter(self._rows)


@dataclass(frozen=True)
class Executed:
    """What a statement changed; ``last_insert_id`` is MySQL/MariaDB's generated id."""

    rows_affected: int
    last_insert_id: int | None = None


def encode(value: Any, where: str = "param") -> Any:
    """A parameter as §4.10's JSON value."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise HostError("INVALID", "sql", f"{where}: {value} is not a SQL value")
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, Json):
        return {"$json": value.value}
    if isinstance(value, datetime.datetime):
        return {"$timestamp": value.isoformat()}
    if isinstance(value, datetime.date):
        return {"$date": value.isoformat()}
    if isinstance(value, datetime.time):
        return {"$time": value.isoformat()}
    if isinstance(value, decimal.Decimal):
        return {"$decimal": str(value)}
    raise HostError("INVALID", "sql", f"{where}: {type(value).__name__} is not a SQL value "
                                      "(wrap a dict or list in sql.Json)")


def decode(value: Any) -> Any:
    """A §4.10 cell as its Python value."""
    if not isinstance(value, dict) or len(value) != 1:
        return value
    ((tag, inner),) = value.items()
    if tag == "$bytes":
        return base64.b64decode(inner)
    if tag == "$json":
        return Json(inner)
    if tag == "$timestamp":
        return datetime.datetime.fromisoformat(inner.replace("Z", "+00:00"))
    if tag == "$date":
        return datetime.date.fromisoformat(inner)
    if tag == "$time":
        return datetime.time.fromisoformat(inner)
    if tag == "$decimal":
        return decimal.Decimal(inner)
    return value


def _request(statement: LiteralString, params: Sequence[Any], tx: int | None) -> str:
    if not isinstance(statement, str):
        raise TypeError("the statement must be a string constant of the plugin")
    req: dict[str, Any] = {
        "sql": statement, "params": [encode(p, f"params[{i}]") for i, p in enumerate(params)]}
    if tx is not None:
        req["tx"] = tx
    return json.dumps(req)


class _Runner:
    name: str
    _tx: int | None = None

    def query(self, statement: LiteralString, params: Sequence[Any] = ()) -> Rows:
        """Run a statement that returns rows (``statement``: a literal or a module-level
        constant, which ``omnicore build`` and ``omnicore test`` check)."""
        out = json.loads(_host.call("query", self.name, _request(statement, params, self._tx)))
        columns = [Column(c["name"], c.get("type", "")) for c in out["columns"]]
        return Rows(columns, [[decode(v) for v in row] for row in out["rows"]])

    def execute(self, statement: LiteralString, params: Sequence[Any] = ()) -> Executed:
        """Run a statement that changes rows (``statement``: as for :meth:`query`)."""
        out = json.loads(_host.call("execute", self.name, _request(statement, params, self._tx)))
        return Executed(int(out["rows_affected"]), out.get("last_insert_id"))


class Transaction(_Runner):
    """An open transaction: :meth:`commit` or :meth:`rollback` it, or use it as a context
    manager (committed when the block ends, rolled back when it raises)."""

    def __init__(self, name: str, tx: int) -> None:
        self.name, self._tx, self._open = name, tx, True

    @property
    def id(self) -> int:
        return self._tx or 0

    def commit(self) -> None:
        """Commit; a :class:`HostError` means nothing was committed."""
        if not self._open:
            raise HostError("NOT_FOUND", "sql.commit", "the transaction has ended")
        self._open = False
        _host.call("commit", self._tx)

    def rollback(self) -> None:
        """Roll back; after :meth:`commit` or :meth:`rollback` it does nothing."""
        if self._open:
            self._open = False
            _host.call("rollback", self._tx)

    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        if kind is None and self._open:
            self.commit()
        else:
            self.rollback()


class Connection(_Runner):
    """A SQL connector the operator granted, by name (nothing is checked before a statement)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def begin(self) -> Transaction:
        """Open a transaction on this connector."""
        return Transaction(self.name, int(_host.call("begin", self.name)))

    def transaction(self) -> Transaction:
        """``with db.transaction() as tx:``: :meth:`begin`, committed when the block ends."""
        return self.begin()


def connect(name: str) -> Connection:
    """A handle on the connector ``name``."""
    return Connection(name)
