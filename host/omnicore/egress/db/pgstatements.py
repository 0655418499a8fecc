"""A PostgreSQL statement judged by PostgreSQL's own grammar (specs/abi.md §4.10,
"Statements"): libpg_query, the server's parser as a library (``pglast``), reads the text
into the server's parse tree; the statement's kind is its root node, and every node under it
is walked for statements nested inside (a data-modifying ``WITH``, ``EXPLAIN ANALYZE``) and
for function calls whose effect outlives or escapes the statement.

A kind is the parse node's name without ``Stmt``, in snake case (``CopyStmt``: ``copy``,
``CreateTableAsStmt``: ``create_table_as``): the names an operator widens with.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from typing import Any

import orjson

from omnicore.egress.db.verdict import TX, Verdict, widen_hint


@functools.cache  # imported at the first statement: pglast takes tens of ms to import
def _parser() -> Any:
    try:
        from pglast import parser
    except ImportError:  # the connectors extra is not installed: no PostgreSQL connector works
        return None
    return parser


__all__ = ["judge", "kinds", "nodes"]

#: Reads and row changes: what any plugin may send, and may nest (WITH, EXPLAIN).
_DATA = {"SelectStmt": "select", "InsertStmt": "insert", "UpdateStmt": "update",
         "DeleteStmt": "delete", "MergeStmt": "merge"}
_WRITES = frozenset({"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})
#: Harmless on their own: EXPLAIN is judged by the statement it explains (ANALYZE runs it),
#: SHOW reads a setting.
_READS = {"ExplainStmt": "explain", "VariableShowStmt": "variable_show"}
#: Kinds that only end with the transaction the API opened, allowed inside one.
_IN_TX = {"ConstraintsSetStmt", "LockStmt"}
_TX_IN_TX = frozenset({"TRANS_STMT_SAVEPOINT", "TRANS_STMT_RELEASE", "TRANS_STMT_ROLLBACK_TO"})
#: What a refusal calls a kind whose snake name reads badly as SQL.
_LABELS = {"CreateStmt": "CREATE TABLE", "IndexStmt": "CREATE INDEX", "ViewStmt": "CREATE VIEW",
           "VariableSetStmt": "SET", "CreateFunctionStmt": "CREATE FUNCTION/PROCEDURE",
           "CreatedbStmt": "CREATE DATABASE", "DropdbStmt": "DROP DATABASE",
           "GrantStmt": "GRANT/REVOKE", "GrantRoleStmt": "GRANT/REVOKE role",
           "RenameStmt": "ALTER ... RENAME", "VacuumStmt": "VACUUM/ANALYZE",
           "FetchStmt": "FETCH/MOVE", "ClosePortalStmt": "CLOSE", "DeclareCursorStmt": "DECLARE",
           "CheckPointStmt": "CHECKPOINT", "CreateTableAsStmt": "CREATE TABLE AS/SELECT INTO",
           "AlterRoleSetStmt": "ALTER ROLE ... SET", "AlterDatabaseSetStmt":
           "ALTER DATABASE ... SET", "CreateSeqStmt": "CREATE SEQUENCE", "RuleStmt": "CREATE RULE",
           "CreateTrigStmt": "CREATE TRIGGER", "CopyStmt": "COPY", "DoStmt": "DO",
           "CallStmt": "CALL", "LoadStmt": "LOAD"}

_ADVISORY = "takes or frees a session advisory lock (held past the statement): use " \
            "pg_advisory_xact_lock inside an API transaction"
_LARGE_OBJECT = "works on a large object, stored outside the statement's rows: use a bytea " \
                "column"
_SIGNAL = "signals another server process (a neighbour's statement)"
_SETTING = "changes a setting past the statement: SET LOCAL inside an API transaction"
_NOTIFY = "sends a notification out of the database: write to a table the reader polls"
_FILES = "reaches the server's files"
_REMOTE = "opens another connection from the server"
_ADMIN = "administers the server, beyond any one plugin's statement"
_SQL_TEXT = "runs SQL text that is not judged as a statement"
_SNAPSHOT = "exports the transaction's snapshot to other sessions"
_SEED = "reseeds random() for every later statement of the pooled session, a neighbour's " \
        "too (DISCARD ALL does not undo it)"
_LEXER = "changes how the server reads the text of the statements after it, which this gate " \
         "reads as PostgreSQL's default does (a string to one, code to the other)"
#: Settings no SET, SET LOCAL or RESET may touch, whatever is widened (issue 60 attacks:
#: SET LOCAL standard_conforming_strings = off in an API transaction, then
#: SELECT 'a\'' , pg_advisory_lock(1) --' was one string to the gate and a call to the server).
_NEVER_SET = {"seed": _SEED, "standard_conforming_strings": _LEXER, "backslash_quote": _LEXER}
#: Functions refused wherever a call of them stands, by name (any schema, any quoting).
_FUNCTIONS = {
    "set_config": _SETTING, "pg_notify": _NOTIFY, "pg_cancel_backend": _SIGNAL,
    "pg_terminate_backend": _SIGNAL, "pg_reload_conf": _ADMIN, "pg_rotate_logfile": _ADMIN,
    "pg_switch_wal": _ADMIN, "pg_backup_start": _ADMIN, "pg_backup_stop": _ADMIN,
    "pg_start_backup": _ADMIN, "pg_stop_backup": _ADMIN, "pg_promote": _ADMIN,
    "pg_log_backend_memory_contexts": _ADMIN, "pg_import_system_collations": _ADMIN,
    "pg_export_snapshot": _SNAPSHOT, "pg_stat_file": _FILES, "loread": _LARGE_OBJECT,
    "lowrite": _LARGE_OBJECT, "query_to_xml": _SQL_TEXT, "query_to_xmlschema": _SQL_TEXT,
    "query_to_xml_and_xmlschema": _SQL_TEXT, "cursor_to_xml": _SQL_TEXT,
    "cursor_to_xmlschema": _SQL_TEXT, "ts_stat": _SQL_TEXT, "ts_rewrite": _SQL_TEXT,
    # setseed's state is the backend's, not a setting: no reset restores it (issue 60 attack).
    "setseed": _SEED, "pg_rotate_logfile_old": _ADMIN,
}
#: ... and by the start of their name (families of functions).
_PREFIXES = (("pg_advisory_", _ADVISORY), ("pg_try_advisory_", _ADVISORY),
             ("lo_", _LARGE_OBJECT), ("dblink", _REMOTE), ("pg_background", _REMOTE),
             ("pg_read_", _FILES), ("pg_ls_", _FILES), ("pg_file_", _FILES),
             ("pg_logdir_", _FILES), ("pg_stat_reset", _ADMIN), ("pg_stat_statements_reset",
                                                                  _ADMIN),
             ("pg_create_", _ADMIN), ("pg_drop_replication", _ADMIN), ("pg_copy_", _ADMIN),
             ("pg_replication_", _ADMIN), ("pg_logical_", _ADMIN), ("pg_wal_replay_", _ADMIN))
#: Built-ins that write, refused on a read-only connector (its read-only transaction refuses
#: them too: this is the clear error).
_WRITING = {"nextval": "advances a sequence", "setval": "sets a sequence",
            # A read-only transaction lets these run (issue 60 attack, proved on PostgreSQL
            # 15): an xid assigned writes a commit record; the index functions write pages.
            "txid_current": "assigns a transaction id (a commit record is written)",
            "pg_current_xact_id": "assigns a transaction id (a commit record is written)",
            "brin_summarize_new_values": "writes an index", "brin_summarize_range":
            "writes an index", "brin_desummarize_range": "writes an index",
            "gin_clean_pending_list": "writes an index"}
#: A refused name anywhere in the tree (a call, or a field that may be one in attribute
#: notation): the statement takes the walk.
_NAMED = re.compile('"sval":"(?:' + "|".join(map(re.escape, [*_FUNCTIONS, *_WRITING])) + "|"
                    + "|".join(re.escape(p) for p, _ in _PREFIXES) + ")", re.IGNORECASE).search


def _function(name: str, read_only: bool) -> str | None:
    name = name.lower()  # (a quoted name keeps its case; refuse it all the same)
    why = _FUNCTIONS.get(name)
    if why is None:
        for prefix, reason in _PREFIXES:
            if name.startswith(prefix):
                # A transaction-level advisory lock ends with the transaction: allowed.
                if reason is _ADVISORY and "_xact_" in name:
                    return None
                why = reason
                break
    if why is None and read_only:
        why = _WRITING.get(name)
    return why


@functools.cache  # a few hundred node names
def _snake(node: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", node.removesuffix("Stmt")).lower()


def _label(node: str, body: dict[str, Any]) -> str:
    if node == "TransactionStmt":
        kind = str(body.get("kind", "")).removeprefix("TRANS_STMT_")
        return {"PREPARE": "PREPARE TRANSACTION", "START": "START TRANSACTION"}.get(
            kind, kind.replace("_", " "))
    if node == "VariableSetStmt":
        name = str(body.get("name", ""))
        if name in ("role", "session_authorization"):
            return "SET " + name.upper().replace("_", " ")
        return "RESET" if body.get("kind", "").startswith("VAR_RESET") else "SET"
    return _LABELS.get(node) or _snake(node).upper().replace("_", " ")


def kinds() -> frozenset[str]:
    """Every statement kind PostgreSQL's grammar has (the names an operator widens with)."""
    from pglast import ast  # only when a config is loaded: the module is large
    return frozenset(_snake(n) for n in dir(ast) if n.endswith("Stmt") and n != "RawStmt")


def nodes(tree: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every node of the tree (a node is a one-key mapping: its type, then its fields)."""
    stack = [tree]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key[:1].isupper() and isinstance(value, dict):
                    yield key, value
                if isinstance(value, dict | list):
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def _in_tx(node: str, body: dict[str, Any]) -> bool:
    """Kinds that end with the API's transaction (their effect dies with it)."""
    if node in _IN_TX:
        return True
    if node == "TransactionStmt":
        return body.get("kind") in _TX_IN_TX
    if node == "VariableSetStmt":
        if body.get("name") in ("role", "session_authorization") or \
                body.get("name") in _NEVER_SET:
            return False  # another role's authority, even for a transaction; _NEVER_SET
        return bool(body.get("is_local")) or (
            body.get("kind") == "VAR_SET_MULTI" and str(body.get("name", "")).startswith(
                "TRANSACTION"))
    return False


def _refuse_kind(node: str, body: dict[str, Any], in_tx: bool,
                 widen: frozenset[str]) -> Verdict | None:
    """None when a statement of this kind may run here (its widened use marked)."""
    kind = _snake(node)
    if node in _DATA or node in _READS:
        return None
    label = _label(node, body)
    if node == "TransactionStmt" or (node == "VariableSetStmt" and body.get("kind") ==
                                     "VAR_SET_MULTI" and body.get("name") == "TRANSACTION"):
        if in_tx and _in_tx(node, body):
            return None
        if node == "TransactionStmt" and body.get("kind") in _TX_IN_TX:
            return Verdict(f"{label} outside an API transaction: use it inside one (begin)",
                           kind)
        if node == "TransactionStmt":
            return Verdict(f"{label} {TX}", kind)
    if in_tx and _in_tx(node, body):
        return None
    if node == "VariableSetStmt" and body.get("name") in _NEVER_SET:
        # SET [LOCAL] seed and RESET seed call setseed (random()'s state outlives the
        # transaction: only the setting's shown value is rolled back); the others change the
        # lexer under the gate. Refused whatever is widened, as the functions are.
        name = str(body["name"])
        return Verdict(f"{label} {name} {_NEVER_SET[name]}", kind)
    if node == "CopyStmt" and not body.get("filename"):
        return Verdict("COPY to or from the client (STDIN/STDOUT) copies through the "
                       "connection's own stream, which the host does not serve: query the "
                       "rows or insert them with parameters", kind)
    if kind in widen:
        return Verdict(None, kind, widened=True)
    if node in ("LockStmt", "ConstraintsSetStmt", "VariableSetStmt") and _in_tx(node, body):
        return Verdict(f"{label} (kind {kind}) outside an API transaction would outlive the "
                       "statement: use it inside one (begin)", kind)
    return Verdict(f"{label} (kind {kind}) is not a read or a row change: the operator runs "
                   f"it, or allows it with {widen_hint(kind)}", kind)


def judge(sql: str, in_tx: bool, read_only: bool, widen: frozenset[str]) -> Verdict:
    """The verdict on one PostgreSQL statement (see :func:`omnicore.egress.db.statements.
    judge`)."""
    parser = _parser()
    if parser is None:
        return Verdict("cannot be judged: the host lacks pglast (pip install "
                       "'omnicore[connectors]')", "")
    if "\0" in sql:
        # libpg_query reads a C string: it would judge the text before the NUL only (the
        # wire ends the statement there too, but the gate judges what it was given).
        return Verdict("holds a NUL character", "", invalid=True)
    try:
        text = parser.parse_sql_json(sql)
        tree = orjson.loads(text)
    except parser.ParseError as exc:
        # The server's grammar refuses it too; the plugin hears the parser's own words.
        return Verdict(f"{exc} (PostgreSQL's grammar)", "", invalid=True)
    stmts = tree.get("stmts") or []
    if len(stmts) != 1:
        return Verdict("holds no statement" if not stmts else
                       f"holds {len(stmts)} statements: send one per request", "",
                       invalid=True)
    ((root, _),) = stmts[0]["stmt"].items()
    kind = _snake(root)
    # Most statements are a plain read or row change: no other statement node, no call, no
    # INTO in the tree's text, so no walk (a string holding those words only takes the walk).
    if root in _DATA and text.count('Stmt":') == 1 and '"FuncCall"' not in text and \
            '"intoClause"' not in text and not _NAMED(text) and not (root in _WRITES and (
                read_only or "pg_settings" in text.lower())):
        return Verdict(None, kind)
    widened = False
    # SELECT ... INTO makes a table. Looked for in the text, not at SelectStmt nodes: the
    # arms of a UNION (larg, rarg) are select bodies without their node name, and
    # SELECT 1 INTO t UNION SELECT 2 made t (issue 60 attack). (A string holding the word is
    # escaped in the JSON text: "intoClause": is only ever the field.)
    if '"intoClause":' in text:
        if "create_table_as" not in widen:
            return Verdict("SELECT ... INTO (kind create_table_as) creates a table: the "
                           "operator runs it, or allows it with "
                           + widen_hint("create_table_as"), kind)
        widened = True
    for node, fields in nodes(stmts[0]["stmt"]):
        if node.endswith("Stmt"):
            verdict = _refuse_kind(node, fields, in_tx, widen)
            if verdict is not None:
                if verdict.reason is not None:
                    return verdict
                widened = True
            if read_only and node in _WRITES:
                return Verdict(f"{_DATA[node].upper()} writes", kind, read_only=True)
            if node in _WRITES and str(fields.get("relation", {}).get("relname", "")).lower() \
                    == "pg_settings":
                return Verdict(f"{_DATA[node].upper()} of pg_settings {_SETTING} (the view's "
                               "rule calls set_config)", kind)
        elif node == "FuncCall":
            name = fields["funcname"][-1].get("String", {}).get("sval", "")
            why = _function(name, read_only)
            if why is not None:
                return Verdict(f"calls {name}(), which {why}", kind,
                               read_only=why in _WRITING.values())
        elif node in ("A_Indirection", "ColumnRef"):
            # Attribute notation calls a function with no FuncCall in the tree: PostgreSQL
            # runs (1).pg_advisory_lock, and x.pg_advisory_lock of a scalar FROM item, as
            # pg_advisory_lock(1) (issue 60 attack). A field named like a refused function
            # is refused as that call (a column so named: select it unqualified).
            names = fields.get("indirection" if node == "A_Indirection" else "fields", [])
            for field in names[node == "ColumnRef":]:
                name = field.get("String", {}).get("sval", "") if isinstance(field, dict) \
                    else ""
                why = _function(name, read_only) if name else None
                if why is not None:
                    return Verdict(f"calls {name}() in attribute notation (x.{name}), which "
                                   f"{why}", kind, read_only=why in _WRITING.values())
    return Verdict(None, kind, widened=widened)
