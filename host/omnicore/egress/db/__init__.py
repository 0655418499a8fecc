"""Database connectors: PostgreSQL, MySQL/MariaDB and Redis for plugins (specs/abi.md
§4.10-4.12), with credentials only the host holds.

::

    config.py    ``connectors.<name>`` of kind postgres, mysql or redis (no password in a URL)
    values.py    SQL values as JSON, both ways (tags: $bytes, $json, $timestamp, ...)
    base.py      the bounded connection pool, the client-side deadline, caps, one-line failures
    sql.py       a SQL connector's backend: statements, transactions, the result's JSON
    statements.py    what a plugin's statement may be, judged by the server's grammar:
    pgstatements.py  PostgreSQL's own parser (pglast), the kinds and functions refused
    mystatements.py  MariaDB's lexical rules, the kinds and functions refused
    verdict.py       the verdict they share and its §4.10 status
    postgres.py  the PostgreSQL dialect (psycopg 3)
    pg_wire.py   libpq's reads bounded in bytes: the opening, the host's statements, a result
    mysql.py     the MySQL/MariaDB dialect (PyMySQL)
    mysql_wire.py    PyMySQL's connection and result, leaner and bounded
    redis.py     the Redis backend (RESP2, replies bounded as they are read)
    lifetime.py  what a statement may leave on its session, cleaned before another plugin's
    service.py   ``app.databases``: a backend per connector, shared by every plugin

The drivers are imported when a connector of their kind is first used.
"""

from omnicore.egress.db.config import DB_KINDS, DbConnector, db_connector, db_connectors_from
from omnicore.egress.db.service import Databases

__all__ = ["DB_KINDS", "Databases", "DbConnector", "db_connector", "db_connectors_from"]
