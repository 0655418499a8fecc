"""What a plugin's SQL statement may be (specs/abi.md §4.10, "Statements").

A statement runs on a pooled server session the host keeps for the plugin. Statements that
would change that session past the statement — its settings, role, prepared statements,
cursors, listeners, locks held outside a transaction, the current database — or that open
and end transactions behind the API's ``begin``/``commit``/``rollback`` are refused here,
by their leading keyword, with one clear line. What a keyword cannot show (a function
that changes a setting, a procedure, a DO block) is made harmless by the reset that every
connection passes through before it serves another plugin (:class:`~omnicore.egress.db.base.
Pool`), and read-only by the read-only transaction every statement of a read-only connector
runs in: this gate is the clear error, not the guarantee.
"""

from __future__ import annotations

import functools
import re

__all__ = ["refusal"]

# Whitespace, comments and opening parentheses before a statement's first word. (A MySQL
# executable comment, /*! ... */, is code: it is refused below, not skipped.)
_LEAD = re.compile(r"(?:\s+|--[^\n]*(?:\n|\Z)|#[^\n]*(?:\n|\Z)|/\*(?![!M]).*?\*/|\()*",
                   re.DOTALL)
_WORDS = re.compile(r"([A-Za-z_]+)(?:\s+([A-Za-z_]+))?")

_TX = "opens or ends a transaction: use the API's begin, commit and rollback"
_SESSION = ("changes the server session beyond the statement (its settings would outlive "
            "the call)")
#: Leading keywords refused everywhere, with the reason.
_ALWAYS = {
    "BEGIN": _TX, "START": _TX, "COMMIT": _TX, "END": _TX, "ABORT": _TX, "XA": _TX,
    "RESET": _SESSION, "DISCARD": _SESSION, "LISTEN": _SESSION, "UNLISTEN": _SESSION,
    "PREPARE": _SESSION, "EXECUTE": _SESSION, "DEALLOCATE": _SESSION, "USE": _SESSION,
    "UNLOCK": _SESSION, "HANDLER": _SESSION, "LOAD": _SESSION, "DECLARE": _SESSION,
    "FETCH": _SESSION, "MOVE": _SESSION, "CLOSE": _SESSION, "KILL": _SESSION,
    "COPY": "copies through the connection's own stream, which the host does not serve",
}
#: Keywords allowed only inside a transaction the API opened (they end with it), PostgreSQL.
_IN_TX_PG = {"SAVEPOINT", "RELEASE", "LOCK"}
_IN_TX_MYSQL = {"SAVEPOINT", "RELEASE"}


@functools.lru_cache(maxsize=1024)  # a plugin's statements are few literals, run again and again
def refusal(sql: str, kind: str, in_tx: bool) -> str | None:
    """Why the statement ``sql`` of a ``kind`` ("postgres" or "mysql") connector may not run
    (``in_tx``: inside a transaction the API opened), or None when it may."""
    if kind == "mysql" and ("/*!" in sql or "/*M!" in sql):
        return "holds a MySQL executable comment (/*! ... */), which runs as code"
    lead = _LEAD.match(sql)
    words = _WORDS.match(sql, lead.end() if lead else 0)
    if words is None:
        # (A nested comment PostgreSQL reads and this does not, say: never a bypass.)
        return "does not start with a statement's keyword"
    first = words.group(1).upper()
    second = (words.group(2) or "").upper()
    why = _ALWAYS.get(first)
    if why is not None:
        return f"{first} {why}"
    if first == "ROLLBACK":
        if in_tx and second == "TO":
            return None
        return f"ROLLBACK {_TX}"
    if first == "SET":
        # Inside an API transaction PostgreSQL's SET LOCAL, SET TRANSACTION and SET
        # CONSTRAINTS end with the transaction; everything else SET changes is the session's
        # (MySQL's SET STATEMENT ... FOR would lift the statement's time limit).
        if kind == "postgres" and in_tx and second in ("LOCAL", "TRANSACTION", "CONSTRAINTS"):
            return None
        return f"SET {_SESSION}"
    if first in (_IN_TX_PG if kind == "postgres" else _IN_TX_MYSQL):
        return None if in_tx else f"{first} outside a transaction {_SESSION}"
    if first == "LOCK":  # MySQL's LOCK TABLES holds them past the statement
        return f"LOCK {_SESSION}"
    return None
