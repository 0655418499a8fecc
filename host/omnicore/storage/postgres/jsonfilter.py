"""Metadata filters on JSON text columns, compared as SQLite's ``json_extract`` compares them.

SQLite's ``json_extract(meta, '$."k"') = ?`` gives a JSON string as text, a number as a
number and ``true``/``false`` as 1/0; the stores' contract is written against that. The same
comparison in PostgreSQL, per value type, so a filter matches the same rows on both backends.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["filter_sql"]


def filter_sql(column: str, flt: Sequence[tuple[str, str | int | float]]) -> tuple[str, list[Any]]:
    """`` AND ...`` clauses for ``flt`` over the JSON text ``column``, and their arguments."""
    sql: list[str] = []
    args: list[Any] = []
    for key, value in flt:
        field = f"(CAST({column} AS jsonb) -> ?)"
        if isinstance(value, str):
            sql.append(f" AND {field} = to_jsonb(CAST(? AS text))")
            args += [key, value]
        else:
            sql.append(f" AND (CASE jsonb_typeof({field}) WHEN 'number' THEN "
                       f"CAST({field} AS numeric) = CAST(? AS numeric) WHEN 'boolean' THEN "
                       f"(CASE WHEN CAST({field} AS boolean) THEN 1 ELSE 0 END) = "
                       "CAST(? AS numeric) "
                       "ELSE false END)")
            args += [key, key, value, key, value]
    return "".join(sql), args
