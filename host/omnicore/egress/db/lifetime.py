"""Whether a plugin's statement may leave something on its server session that outlives the
call (specs/abi.md §4.10, "Sessions": session locks, temporary tables, a prepared or XA
transaction, a role): then the connection is cleaned when the plugin gives it back, on the
plugin's own deadline (:meth:`omnicore.egress.db.sql.Dialect.clean`), never on the next
plugin's.

Only a function, a procedure or a statement kind beyond reads and row changes can leave such
state, so a statement that calls none costs nothing (a one-row query pays no round trip).
The answer errs one way only: anything this cannot read is "may leave". What it does not see
is code the database's owner wrote and a statement reaches without naming it (a view's, a
trigger's, a default's or an operator's function): a plugin's role creates none of it (DDL
is refused), and the hand-over's reset still ends it before another plugin gets the session.
"""

from __future__ import annotations

import functools
import re

import orjson

from omnicore.egress.db.pgstatements import nodes

__all__ = ["SAFE_FUNCTIONS", "mysql_leaves", "pg_leaves"]

#: Built-in functions that keep nothing past the statement (no lock, no table, no setting):
#: calling them needs no clean-up. Anything else (another built-in, any function of the
#: database's own) is taken to leave something.
SAFE_FUNCTIONS = frozenset("""
abs age array_agg array_length array_position array_to_string avg bool_and bool_or btrim
cardinality ceil ceiling char_length character_length coalesce concat concat_ws count
cume_dist current_date current_timestamp date date_part date_trunc dense_rank every exp
extract first_value floor format gen_random_uuid generate_series greatest if ifnull
initcap instr json_agg json_array json_array_length json_build_array json_build_object
json_extract json_extract_path json_extract_path_text json_object json_object_agg
json_unquote json_value jsonb_agg jsonb_array_length jsonb_build_array jsonb_build_object
jsonb_extract_path jsonb_extract_path_text jsonb_object_agg jsonb_set lag last_value lcase
lead least left length ln localtime localtimestamp locate log log10 lower lpad ltrim max
md5 mid min mod now nth_value ntile nullif octet_length percent_rank position pow power
rank regexp_replace repeat replace reverse right round row_number rpad rtrim sha1 sha2
sign split_part sqrt stddev strpos substr substring sum timestamp to_char to_date
to_json to_jsonb to_number to_timestamp trim trunc truncate ucase unix_timestamp unnest
upper utc_timestamp uuid variance year month day hour minute second
""".split())

#: PostgreSQL statement kinds that run no function of their own choosing beyond their
#: expressions' (walked below).
_PG_PLAIN = frozenset({"SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"})


@functools.lru_cache(maxsize=1024)  # a plugin's statements are few literals, run again and again
def pg_leaves(sql: str) -> bool:
    """Whether PostgreSQL statement ``sql`` may leave state on the session (parsed by
    PostgreSQL's own grammar: a function named in a comment or a string is not a call)."""
    try:
        from pglast.parser import parse_sql_json

        tree = orjson.loads(parse_sql_json(sql))
    except Exception:
        return True  # unreadable here: the server may read it otherwise
    stmts = tree.get("stmts") or []
    for raw in stmts:
        stmt = raw.get("stmt") or {}
        if not stmt or next(iter(stmt)) not in _PG_PLAIN:
            return True
    for node, body in nodes(tree):
        if node == "FuncCall":
            names = [n.get("String", {}).get("sval", "") for n in body.get("funcname", [])]
            if len(names) > 2 or (len(names) == 2 and names[0] != "pg_catalog") or \
                    names[-1].lower() not in SAFE_FUNCTIONS:
                return True
        elif node == "SelectStmt" and body.get("intoClause"):  # SELECT INTO: a table made
            return True
    return False


# MariaDB's tokens as the server reads them by default: strings (backslash escapes), quoted
# identifiers, words, parentheses; anything else is one character. Comments are not skipped:
# a statement with one is "may leave" (an executable comment, /*! */, is code).
_MY_TOKENS = re.compile(r"""'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.|"")*"|`(?:[^`]|``)*`"""
                        r"""|[A-Za-z0-9_$]+|[()]|\S""", re.DOTALL)
# The same without backslash escapes (sql_mode NO_BACKSLASH_ESCAPES): a string read the
# other way could hide a call, so both readings must find none.
_MY_TOKENS_NB = re.compile(r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|`(?:[^`]|``)*`"""
                           r"""|[A-Za-z0-9_$]+|[()]|\S""", re.DOTALL)
# Words before a parenthesis that are not a function's name.
_NOT_CALLS = frozenset({"VALUES", "VALUE", "IN", "AND", "OR", "NOT", "ON", "AS", "USING",
                        "WHERE", "SELECT", "FROM", "JOIN", "EXISTS", "ANY", "ALL", "SOME",
                        "SET", "WHEN", "THEN", "ELSE", "BY", "HAVING", "UNION", "IS",
                        "BETWEEN", "LIKE", "RETURNING", "DISTINCT", "CASE", "END", "LIMIT",
                        "OFFSET", "INTERSECT", "EXCEPT", "WITH", "RECURSIVE", "OVER",
                        "PARTITION", "ORDER", "GROUP", "DIV", "XOR", "REGEXP", "RLIKE",
                        "ESCAPE", "DUPLICATE", "KEY", "UPDATE"})
# Leading words of statements that cannot run code of their own choosing.
_MY_PLAIN = frozenset({"SELECT", "INSERT", "UPDATE", "DELETE", "REPLACE", "WITH", "("})


def _my_calls(tokens: list[str]) -> bool:
    """Whether the tokens of a MariaDB statement call a function not known safe."""
    if not tokens or tokens[0].upper() not in _MY_PLAIN:
        return True
    for i, tok in enumerate(tokens):
        if tok != "(" or i == 0:
            continue
        prev = tokens[i - 1]
        if prev in ("(", ",") or not (prev[0].isalnum() or prev[0] in "_$`"):
            continue  # an expression's, a list's or an operator's parenthesis
        word = prev.upper()
        if word in _NOT_CALLS:
            continue
        # INSERT INTO t (a, b), REPLACE INTO db.t (a): the table's column list.
        back = tokens[i - 4:i - 1] if i >= 4 else tokens[:i - 1]
        if (back[-1:] and back[-1].upper() == "INTO") or \
                (len(back) == 3 and back[0].upper() == "INTO" and back[2] == "."):
            continue
        if prev[0] == "`" or word.lower() not in SAFE_FUNCTIONS or \
                (i >= 2 and tokens[i - 2] == "."):  # db.count(): a stored function
            return True
    return False


@functools.lru_cache(maxsize=1024)
def mysql_leaves(sql: str) -> bool:
    """Whether MariaDB/MySQL statement ``sql`` may leave state on the session."""
    if "/*" in sql or "#" in sql or "--" in sql:
        return True  # comments: an executable one is code, and "--" reads per the server
    return _my_calls(_MY_TOKENS.findall(sql)) or _my_calls(_MY_TOKENS_NB.findall(sql))
