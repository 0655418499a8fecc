"""The least authority per plugin (specs/abi.md §4.12, ``plugins`` and ``privileges``): a
connector gives a plugin a database role of its own, whose connections serve no other
plugin, and checks a role's privileges at its first connection. Against real PostgreSQL and
MariaDB servers; the roles are made as the superuser, as an operator would."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytest

from omnicore.egress.db import db_connector
from omnicore.errors import ConfigError
from tests.capabilities.test_sql_mysql import url  # noqa: F401 - a fixture
from tests.capabilities.test_sql_postgres import PASSWORD as PG_PASSWORD
from tests.capabilities.test_sql_postgres import ROLE as PG_ROLE
from tests.capabilities.test_sql_postgres import pg  # noqa: F401 - a fixture
from tests.db_fixtures import Db, framed, maria, sql_app  # noqa: F401 - fixtures
from tests.dbservers import PASSWORD as MARIA_PASSWORD
from tests.dbservers import MariaDB

GRANT = {"sql": {"connectors": ["db"]}}


def _load(sql_app: Callable[..., Db], conn: dict[str, Any],  # noqa: F811
          secrets: dict[str, str], names: tuple[str, ...] = ("reporter", "shop")) -> list[Db]:
    conns = {"db": {"secret": "db-pw", **conn}}
    return [sql_app(conns, GRANT, name=n, secrets=secrets) for n in names]


def _pool(db: Db) -> Any:
    return db.app.databases.backend("db", ("postgres", "mysql")).pool


# -- the keys ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("plugins", "key"), [
    ("reporter", "connectors.db.plugins"),
    ({"reporter": {"user": "r"}}, "connectors.db.plugins.reporter"),
    ({"reporter": {"user": "r", "secret": "s", "password": "x"}},
     "connectors.db.plugins.reporter"),
    ({"reporter": {"user": "r@x", "secret": "s"}}, "connectors.db.plugins.reporter.user"),
    ({"reporter": {"user": "", "secret": "s"}}, "connectors.db.plugins.reporter.user"),
])
def test_a_malformed_role_per_plugin_is_refused_at_load(plugins: Any, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        db_connector("db", {"kind": "postgres", "url": "postgresql://app@db/app",
                            "plugins": plugins})
    assert info.value.key == key


def test_the_privileges_setting_is_checked_at_load() -> None:
    base = {"kind": "mysql", "url": "mysql://app@db/app"}
    assert db_connector("db", base).privileges == "refuse"  # the default
    for mode in ("warn", "strict"):
        assert db_connector("db", {**base, "privileges": mode}).privileges == mode
    with pytest.raises(ConfigError) as info:
        db_connector("db", {**base, "privileges": "ignore"})
    assert info.value.key == "connectors.db.privileges"
    with pytest.raises(ConfigError):
        db_connector("db", {"kind": "redis", "url": "redis://db/0", "plugins": {}})


def test_the_console_shows_each_plugins_role_never_its_secret() -> None:
    c = db_connector("db", {"kind": "postgres", "url": "postgresql://app@db/app",
                            "plugins": {"reporter": {"user": "rep", "secret": "rep-pw"}}})
    shown = c.describe()
    assert shown["plugin_roles"] == {"reporter": "rep"} and "rep-pw" not in str(shown)


# -- PostgreSQL -------------------------------------------------------------------------------
def _pg_role(pg: dict[str, Any], role: str, attrs: str = "") -> None:  # noqa: F811
    cluster = pg["cluster"]
    if not cluster.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'").strip():
        cluster.psql(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}' {attrs}")


def test_pg_a_plugins_own_role_touches_only_itself(
        sql_app: Callable[..., Db], pg: dict[str, Any]) -> None:  # noqa: F811
    role = f"rep_{pg['db']}"
    _pg_role(pg, role, "NOINHERIT")
    cluster = pg["cluster"]
    cluster.psql(f"GRANT CONNECT ON DATABASE \"{pg['db']}\" TO {role}")
    # What a plugin could do to its own role (the gate refuses ALTER ROLE; the superuser
    # does it here): a search path of its own, read at each new connection of the role.
    cluster.psql(f"ALTER ROLE {role} SET search_path = forged")
    reporter, shop = _load(sql_app, {
        "kind": "postgres", "url": pg["url"], "pool_size": 1,
        "plugins": {"reporter": {"user": role, "secret": "rep-pw"}}},
        {"db-pw": PG_PASSWORD, "rep-pw": f"pw-{role}"})
    assert reporter.rows("db", "SELECT current_user, current_setting('search_path')") == \
        [[role, "forged"]]
    pool = _pool(shop)
    # The neighbour, on the one connection of the pool: never the reporter's session (closed
    # for a new one of the connector's own role, not reset and handed over).
    assert shop.rows("db", "SELECT current_user, current_setting('search_path')") == \
        [[PG_ROLE, '"$user", public']]
    assert pool.resets == 0
    assert reporter.rows("db", "SELECT current_user") == [[role]]
    assert pool.resets == 0


def test_pg_a_superuser_connector_role_is_refused_naming_the_privilege(
        sql_app: Callable[..., Db], pg: dict[str, Any]) -> None:  # noqa: F811
    _pg_role(pg, "omni_super", "SUPERUSER")
    su_url = pg["url"].replace(f"{PG_ROLE}@", "omni_super@")
    (shop,) = _load(sql_app, {"kind": "postgres", "url": su_url}, {"db-pw": "pw-omni_super"},
                    names=("shop",))
    got = shop.refused("query", framed("db", b'{"sql": "SELECT 1"}'))
    assert got.startswith("DENIED: connector db: role omni_super has superuser"), got
    assert "One role per plugin" in got and "privileges: warn" in got
    # Refused at every connection, not only the first.
    assert shop.refused("query", framed("db", b'{"sql": "SELECT 1"}')) == got


def test_pg_a_plugins_own_role_is_checked_too_and_refused_alone(
        sql_app: Callable[..., Db], pg: dict[str, Any]) -> None:  # noqa: F811
    _pg_role(pg, "omni_repl", "REPLICATION BYPASSRLS")
    reporter, shop = _load(sql_app, {
        "kind": "postgres", "url": pg["url"],
        "plugins": {"reporter": {"user": "omni_repl", "secret": "rep-pw"}}},
        {"db-pw": PG_PASSWORD, "rep-pw": "pw-omni_repl"})
    got = reporter.refused("query", framed("db", b'{"sql": "SELECT 1"}'))
    assert got.startswith("DENIED: connector db: role omni_repl has BYPASSRLS, REPLICATION"), got
    assert shop.rows("db", "SELECT current_user") == [[PG_ROLE]]  # the neighbour is served


def test_pg_warn_mode_logs_the_privilege_and_serves(
        sql_app: Callable[..., Db], pg: dict[str, Any],  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    _pg_role(pg, "omni_maker", "CREATEROLE CREATEDB")
    mk_url = pg["url"].replace(f"{PG_ROLE}@", "omni_maker@")
    (shop,) = _load(sql_app, {"kind": "postgres", "url": mk_url, "privileges": "warn"},
                    {"db-pw": "pw-omni_maker"}, names=("shop",))
    with caplog.at_level(logging.WARNING, logger="omnicore.egress"):
        assert shop.rows("db", "SELECT 1") == [[1]]
        assert shop.rows("db", "SELECT 2") == [[2]]
    warned = [r.getMessage() for r in caplog.records if "omni_maker has" in r.getMessage()]
    assert len(warned) == 1, warned  # once per role
    assert "CREATEROLE, CREATEDB" in warned[0] and "privileges: warn" in warned[0]


def test_pg_the_owner_role_is_logged_by_default_and_refused_when_strict(
        sql_app: Callable[..., Db], pg: dict[str, Any],  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    (shop,) = _load(sql_app, {"kind": "postgres", "url": pg["url"]}, {"db-pw": PG_PASSWORD},
                    names=("shop",))
    with caplog.at_level(logging.WARNING, logger="omnicore.egress"):
        assert shop.rows("db", "SELECT 1") == [[1]]
    assert any(f"role {PG_ROLE} owns" in r.getMessage() and "the database" in r.getMessage()
               for r in caplog.records)
    strict = db_connector("db", {"kind": "postgres", "url": pg["url"], "secret": "db-pw",
                                 "privileges": "strict"})
    from omnicore.egress.db.service import _make

    backend = _make(strict, lambda name: PG_PASSWORD.encode())
    try:
        with pytest.raises(Exception) as info:
            backend.run("shop", True, "SELECT 1", [], time.monotonic() + 5)
        assert f"role {PG_ROLE} owns" in str(info.value) and "connectors.db.plugins" in \
            str(info.value)
    finally:
        backend.close()


# -- MariaDB ----------------------------------------------------------------------------------
def test_maria_a_plugins_own_account_touches_only_itself(
        sql_app: Callable[..., Db], maria: MariaDB, url: str) -> None:  # noqa: F811
    db = url.rsplit("/", 1)[1]
    account = f"rep{abs(hash(db)) % 10**6}"
    maria.sql(f"CREATE USER IF NOT EXISTS '{account}'@'%' IDENTIFIED BY 'pw-{account}'")
    maria.sql(f"GRANT SELECT ON `{db}`.* TO '{account}'@'%'")
    reporter, shop = _load(sql_app, {
        "kind": "mysql", "url": url, "pool_size": 1,
        "plugins": {"reporter": {"user": account, "secret": "rep-pw"}}},
        {"db-pw": MARIA_PASSWORD, "rep-pw": f"pw-{account}"})
    assert reporter.rows("db", "SELECT CURRENT_USER()") == [[f"{account}@%"]]
    assert shop.rows("db", "SELECT CURRENT_USER()") == [["omnicore@%"]]
    assert reporter.rows("db", "SELECT CURRENT_USER()") == [[f"{account}@%"]]
    assert _pool(shop).resets == 0


def test_maria_a_super_account_is_refused_and_warn_mode_logs(
        sql_app: Callable[..., Db], maria: MariaDB, url: str,  # noqa: F811
        caplog: pytest.LogCaptureFixture) -> None:
    db = url.rsplit("/", 1)[1]
    account = f"su{abs(hash(db)) % 10**6}"
    maria.sql(f"CREATE USER IF NOT EXISTS '{account}'@'%' IDENTIFIED BY 'pw-{account}'")
    maria.sql(f"GRANT SUPER, FILE ON *.* TO '{account}'@'%'")
    maria.sql(f"GRANT SELECT ON `{db}`.* TO '{account}'@'%'")
    su_url = url.replace("omnicore@", f"{account}@")
    shop, = _load(sql_app, {"kind": "mysql", "url": su_url}, {"db-pw": f"pw-{account}"},
                  names=("shop",))
    got = shop.refused("query", framed("db", b'{"sql": "SELECT 1"}'))
    assert got.startswith(f"DENIED: connector db: role {account} has FILE, SUPER"), got
    warn = db_connector("w", {"kind": "mysql", "url": su_url, "secret": "db-pw",
                              "privileges": "warn"})
    from omnicore.egress.db.service import _make

    backend = _make(warn, lambda name: f"pw-{account}".encode())
    try:
        with caplog.at_level(logging.WARNING, logger="omnicore.egress"):
            assert b"[[1]]" in backend.run("shop", True, "SELECT 1", [], time.monotonic() + 5)
        assert any(f"role {account} has FILE, SUPER" in r.getMessage()
                   for r in caplog.records)
    finally:
        backend.close()


# -- the pool's order (specs/abi.md §4.10, Pool and fairness) ----------------------------------
def test_a_freed_connection_goes_to_the_earliest_deadline() -> None:
    import threading

    from omnicore.egress.db.base import Pool
    from tests.egress.db.test_pool import Conn
    from tests.waiting import eventually

    p = Pool("db", 2, lambda deadline: Conn())
    a, _ = p.acquire(time.monotonic() + 5, "a")
    b, _ = p.acquire(time.monotonic() + 5, "b")
    order: list[str] = []
    got: dict[str, Any] = {}

    def wait(owner: str, deadline: float) -> None:
        got[owner] = p.acquire(deadline, owner)[0]
        order.append(owner)

    now = time.monotonic()
    waiters = [threading.Thread(target=wait, args=("late", now + 20)),
               threading.Thread(target=wait, args=("early", now + 10))]
    for n, t in enumerate(waiters, 1):
        t.start()
        eventually(lambda n=n: len(p._queue) == n, "the waiter queued")
    p.release(b)  # to "early" (the earlier deadline), though "late" asked first
    eventually(lambda: order == ["early"], "early served")
    p.release(a)
    for t in waiters:
        t.join(10)
    assert order == ["early", "late"]
    for conn in got.values():
        p.release(conn)
    assert p.in_use == 0
