"""A MariaDB/MySQL statement judged by tokens read with MariaDB's own lexical rules
(specs/abi.md §4.10, "Statements"); no library carries the server's grammar, so this follows
``sql_lex.cc``:

- ``#`` and ``--`` followed by a space or a control character (or the end) comment to the end
  of the line; ``--1`` is two minus signs. ``/* */`` does not nest (the first ``*/`` ends it).
- An executable comment, ``/*! … */``, ``/*!50100 … */``, ``/*M! … */``, is code the server
  runs or skips by its version: refused, never guessed.
- Strings in ``'`` (and ``"`` unless ``ANSI_QUOTES``) double their quote and, unless
  ``NO_BACKSLASH_ESCAPES``, escape with a backslash; identifiers in backticks double theirs.
  The session's ``sql_mode`` decides which reading the server makes, so a text holding a
  backslash is judged under every reading, and refused if any refuses it: a quote can never
  hide a keyword.
- ``;`` ends a statement: anything after it but comments is a second statement, refused.

The statement's kind is its first keyword (after comments and opening parentheses).
"""

from __future__ import annotations

import re

from omnicore.egress.db.verdict import TX, Verdict, widen_hint

__all__ = ["KINDS", "judge", "tokens"]

_ALLOWED = frozenset({"select", "insert", "replace", "update", "delete", "with", "values",
                      "table", "show", "describe", "desc", "explain"})
_WRITES = frozenset({"insert", "replace", "update", "delete"})
_TRANSACTION = frozenset({"begin", "start", "commit", "rollback", "xa", "savepoint", "release"})
#: The leading keywords of MariaDB's statements (the names an operator widens with).
KINDS = _ALLOWED | _TRANSACTION | frozenset({
    "alter", "analyze", "backup", "binlog", "cache", "call", "change", "check", "checksum",
    "close", "create", "deallocate", "declare", "do", "drop", "execute", "fetch", "flush",
    "get", "grant", "handler", "help", "install", "kill", "load", "lock", "open", "optimize",
    "prepare", "purge", "rename", "repair", "reset", "resignal", "return", "revoke", "set",
    "shutdown", "signal", "stop", "truncate", "uninstall", "unlock", "use"})

_LOCKS = "takes or frees a named lock (held past the statement): use SELECT … FOR UPDATE " \
         "inside an API transaction"
_FUNCTIONS = {
    "get_lock": _LOCKS, "release_lock": _LOCKS, "release_all_locks": _LOCKS,
    "load_file": "reads a file of the server",
    "benchmark": "burns the server's CPU for the sake of it",
    "master_pos_wait": "waits on replication", "master_gtid_wait": "waits on replication",
    "source_pos_wait": "waits on replication",
    "wait_for_executed_gtid_set": "waits on replication",
    "sys_exec": "runs a program on the server (a UDF)",
    "sys_eval": "runs a program on the server (a UDF)",
    "sys_set": "changes the server's environment (a UDF)",
}
_WRITING = {"nextval": "advances a sequence", "setval": "sets a sequence"}
#: Tables and schemas that show other sessions' statements: PyMySQL binds a statement's
#: values into its text, so a neighbour on the same role would read them there.
_SESSIONS = frozenset({"PROCESSLIST", "INNODB_TRX", "PERFORMANCE_SCHEMA", "SYS",
                       # The server's logs as tables and the binary log: every session's
                       # statements, to a role the operator granted them (issue 60 attack).
                       "GENERAL_LOG", "SLOW_LOG"})

# One token: a run of spaces, a comment, a quoted text, a word, a variable, or a character.
_SPACE = re.compile(r"[ \t\r\n\f\v]+")
_WORD = re.compile(r"[0-9A-Za-z_$\u0080-\uffff]+")
_VARIABLE = re.compile(r"@@?(?:[0-9A-Za-z_$.\u0080-\uffff]+)?")


class _Verdict(Exception):
    """Refused under any reading (an executable comment)."""


class _Unreadable(_Verdict):
    """Not one statement under this reading: the server, reading it so, refuses it whole."""


def _quoted(sql: str, i: int, quote: str, backslash: bool) -> int:
    """The end of the quoted text opening at ``i``; _Verdict when it never ends."""
    j = i + 1
    n = len(sql)
    while j < n:
        c = sql[j]
        if backslash and c == "\\":
            j += 2
            continue
        if c == quote:
            if j + 1 < n and sql[j + 1] == quote:
                j += 2  # the doubled quote
                continue
            return j + 1
        j += 1
    raise _Unreadable(f"has an unterminated {quote}-quoted text")


def tokens(sql: str, backslash: bool, ansi: bool) -> list[str]:
    """The statement's tokens under one reading: words upper-cased, ``s`` for a string,
    ``q:NAME`` for a quoted name (backticks, double quotes), ``@`` for a variable, else the
    punctuation."""
    out: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        m = _SPACE.match(sql, i)
        if m:
            i = m.end()
        # (DEL is a control character to the server's ctype too: "--\x7f" comments, and
        # read as two minus signs it hid the next line's code from the gate: issue 60 attack)
        elif c == "#" or (sql.startswith("--", i) and (i + 2 >= n or sql[i + 2] <= " " or
                                                       sql[i + 2] == "\x7f")):
            end = sql.find("\n", i)
            i = n if end < 0 else end + 1
        elif sql.startswith("/*", i):
            if sql.startswith(("/*!", "/*M!"), i):
                raise _Verdict("holds an executable comment (/*! … */, /*M! … */), which the "
                               "server runs as code by its version: write the code plainly")
            end = sql.find("*/", i + 2)
            if end < 0:
                raise _Unreadable("has an unterminated /* comment")
            i = end + 2
        elif c == "'":
            i = _quoted(sql, i, c, backslash)
            out.append("s")
        elif c in "\"`":
            # A backtick identifier; " a string, or with ANSI_QUOTES an identifier (escaped by
            # doubling only). Either way its text is kept as a name: a name, quoted, followed
            # by ( is a call of that function.
            end = _quoted(sql, i, c, backslash and not ansi and c == '"')
            out.append("q:" + sql[i + 1:end - 1].replace(c + c, c).upper())
            i = end
        elif c == "@":
            m = _VARIABLE.match(sql, i)
            assert m is not None
            i = m.end()
            out.append("@")
        elif c == ":" and sql.startswith(":=", i):
            i += 2
            out.append(":=")
        else:
            m = _WORD.match(sql, i)
            if m:
                i = m.end()
                out.append(m.group().upper())
            else:
                i += 1
                out.append(c)
    return out


#: After these a name and ( are a table and its column list (INSERT INTO benchmark (id)),
#: never a call. Not HIGH_PRIORITY: SELECT HIGH_PRIORITY GET_LOCK('x', 0) is a call (issue
#: 60 attack); INSERT HIGH_PRIORITY takes INTO, or a table named like a refused function is
#: refused as that call.
_TABLE_BEFORE = frozenset({"INTO", "INSERT", "REPLACE", "TABLE", "IGNORE", "LOW_PRIORITY",
                           "DELAYED"})


def _names(toks: list[str], i: int) -> str | None:
    """The function's name when ``toks[i]`` starts a call (a name, quoted or not, then
    ``(``)."""
    if i + 1 < len(toks) and toks[i + 1] == "(" and toks[i] not in ("s", "@"):
        before = i - 2 if i >= 2 and toks[i - 1] == "." else i  # db.name
        if before >= 1 and toks[before - 1] in _TABLE_BEFORE:
            return None
        return toks[i].removeprefix("q:").lower()
    return None


def _judge_tokens(toks: list[str], in_tx: bool, read_only: bool,
                  widen: frozenset[str]) -> Verdict:
    lead = 0
    while lead < len(toks) and toks[lead] == "(":
        lead += 1
    if lead == len(toks) or not toks[lead][:1].isalpha() or toks[lead] == "s" or \
            toks[lead].startswith("q:"):
        return Verdict("does not start with a statement's keyword", "", invalid=True)
    kind = toks[lead].lower()
    # The ; of a compound body (CREATE PROCEDURE ... BEGIN ...; END), which only a widened
    # CREATE or ALTER may carry, are the body's; the server, never sent the multi-statement
    # flag, refuses a statement after it all the same.
    compound = kind in widen and kind in ("create", "alter") and "BEGIN" in toks
    if ";" in toks and not compound:
        at = toks.index(";")
        if any(t != ";" for t in toks[at:]):
            return Verdict("holds more than one statement: send one per request", "",
                           invalid=True)
        toks = toks[:at]
    rest = toks[lead + 1:]
    widened = False
    if kind in _TRANSACTION:
        if in_tx and (kind in ("savepoint", "release") or (
                kind == "rollback" and "TO" in rest[:2])):
            pass
        elif kind in ("savepoint", "release"):
            return Verdict(f"{kind.upper()} outside an API transaction: use it inside one "
                           "(begin)", kind)
        else:
            return Verdict(f"{kind.upper()} {TX}", kind)
    elif kind == "call" and read_only:
        return Verdict("CALL runs a procedure, which may commit and write past the read-only "
                       "transaction: call it on a connector that is not read_only", kind,
                       read_only=True)
    elif kind not in _ALLOWED:
        if kind not in widen:
            return Verdict(f"{kind.upper()} (kind {kind}) is not a read or a row change: the "
                           f"operator runs it, or allows it with {widen_hint(kind)}", kind)
        widened = True
    if read_only and kind in _WRITES:
        return Verdict(f"{kind.upper()} writes", kind, read_only=True)
    for i, tok in enumerate(toks):
        name = tok.removeprefix("q:")
        if (name in _SESSIONS and (name != "SYS" or toks[i + 1:i + 2] == ["."])) or (
                kind == "show" and name == "ENGINE"):
            return Verdict(f"reads other sessions' statements ({name.lower()}), where a "
                           "neighbour's values are: query your own tables", kind)
        if (kind == "show" and i == lead + 1 and (tok in ("EXPLAIN", "ANALYZE") or (
                tok in ("BINLOG", "RELAYLOG") and "EVENTS" in toks))) or (
                tok == "FOR" and toks[i + 1:i + 2] == ["CONNECTION"]):
            # SHOW EXPLAIN/ANALYZE FOR id, EXPLAIN FOR CONNECTION id: another session's
            # running statement, its literals in the plan (issue 60 attack); SHOW BINLOG
            # EVENTS: every session's statements.
            return Verdict("reads other sessions' statements (SHOW EXPLAIN, EXPLAIN FOR "
                           "CONNECTION, SHOW BINLOG EVENTS), where a neighbour's values are: "
                           "explain your own statement", kind)
        if kind == "show" and i == lead + 1 and (tok == "GRANTS" or (
                tok == "CREATE" and toks[i + 1:i + 2] == ["USER"])):
            # MariaDB prints the account's password hash in both (issue 60 attack).
            return Verdict("shows the connector account's password hash (SHOW GRANTS, SHOW "
                           "CREATE USER): the operator reads grants", kind)
        if tok == ":=":
            return Verdict("assigns a user variable (@x := …), which outlives the statement",
                           kind)
        if tok == "INTO" and i + 1 < len(toks) and toks[i + 1] in ("OUTFILE", "DUMPFILE",
                                                                     "@"):
            what = "a user variable" if toks[i + 1] == "@" else "a file of the server"
            return Verdict(f"SELECT … INTO writes {what}, which outlives the statement: "
                           "read the rows instead", kind)
        if read_only and tok == "NEXT" and toks[i + 1:i + 3] == ["VALUE", "FOR"]:
            return Verdict("NEXT VALUE FOR advances a sequence", kind, read_only=True)
        called = _names(toks, i)
        if called is not None:
            called = called.rsplit(".", 1)[-1]
            why = _FUNCTIONS.get(called) or (_WRITING.get(called) if read_only else None)
            if why is not None:
                return Verdict(f"calls {called.upper()}(), which {why}", kind,
                               read_only=called in _WRITING)
    return Verdict(None, kind, widened=widened)


def judge(sql: str, in_tx: bool, read_only: bool, widen: frozenset[str]) -> Verdict:
    """The verdict on one MariaDB statement (see :func:`omnicore.egress.db.statements.
    judge`)."""
    if "\0" in sql:
        return Verdict("holds a NUL character", "", invalid=True)
    # The readings the session's sql_mode may make (backslash escapes on or off, " a string
    # or an identifier); without a backslash they all tokenize alike.
    readings = [(True, False), (True, True), (False, False)] if "\\" in sql else [
        (True, False)]
    verdict = unreadable = None
    for backslash, ansi in readings:
        try:
            toks = tokens(sql, backslash, ansi)
        except _Unreadable as exc:
            # The server reading it this way refuses it as a syntax error: nothing runs.
            unreadable = unreadable or Verdict(str(exc), "", invalid=True)
            continue
        except _Verdict as exc:
            return Verdict(str(exc), "")
        verdict = _judge_tokens(toks, in_tx, read_only, widen)
        if verdict.reason is not None:
            return verdict
    result = verdict or unreadable
    assert result is not None
    return result
