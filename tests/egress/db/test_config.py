"""Database connectors in the app config (specs/abi.md §4.12): kinds, options, a URL never
carrying a password, and what the console may show."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from omnicore.app import OmniApp
from omnicore.egress import connectors_from
from omnicore.egress.db import Databases, db_connector, db_connectors_from
from omnicore.errors import ConfigError


def test_a_url_with_a_password_is_refused_without_quoting_it() -> None:
    with pytest.raises(ConfigError) as info:
        db_connector("orders", {"kind": "postgres",
                                "url": "postgresql://shop:hunter2-pass@db/shop"})
    assert str(info.value) == ("connectors.orders.url must not carry a password: put it in a "
                               "secret (connectors.<name>.secret)")
    assert info.value.key == "connectors.orders.url"


def test_the_app_refuses_it_at_start(make_app: Callable[..., OmniApp]) -> None:
    app = make_app(overrides={"connectors": {"orders": {
        "kind": "mysql", "url": "mysql://shop:hunter2-pass@db/shop"}}})
    with pytest.raises(ConfigError) as info:
        app.start()
    assert "must not carry a password" in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(("data", "message"), [
    ({"kind": "postgres"}, "needs url \\(and secret for the password\\) or url_secret"),
    ({"kind": "postgres", "url": "x", "url_secret": "y"}, "needs url"),
    ({"kind": "postgres", "url": "mysql://h/db"}, "must start with postgresql://"),
    ({"kind": "redis", "url": "redis://h/abc"}, "the database of a redis URL is a number"),
    ({"kind": "mysql", "url": "mysql://h/db", "pool_size": 0}, "pool_size must be a positive"),
    ({"kind": "mysql", "url": "mysql://h/db", "max_rows": True}, "max_rows must be a positive"),
    ({"kind": "mysql", "url": "mysql://h/db", "key_prefix": "p:"}, "key_prefix is for redis"),
    ({"kind": "mysql", "url": "mysql://h/db", "base_url": "http://x"}, "unknown key 'base_url'"),
    ({"kind": "mysql", "url": "mysql://h/db", "secret": "bad name"}, "bad secret name"),
    ({"kind": "postgres", "url": "postgresql://h/db", "password_to_unverified_server": True},
     "password_to_unverified_server must be refuse \\(the default\\) or allow"),
    ({"kind": "redis", "url": "redis://h/0", "password_to_unverified_server": "allow"},
     "password_to_unverified_server must be .* \\(postgres and mysql connectors\\)"),
])
def test_bad_database_connectors_name_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        db_connector("c", data)


def test_defaults_and_what_the_console_sees() -> None:
    c = db_connector("orders", {"kind": "postgres", "url": "postgresql://shop@db.internal/shop",
                                "secret": "orders-pw"})
    assert (c.pool_size, c.statement_timeout_ms, c.max_rows, c.max_result_bytes,
            c.max_transactions, c.read_only) == (4, 10_000, 10_000, 8 << 20, 2, False)
    assert c.describe() == {"name": "orders", "kind": "postgres", "read_only": False,
                            "pool_size": 4, "host": "db.internal", "port": 5432,
                            "database": "shop", "user": "shop"}
    r = db_connector("cache", {"kind": "redis", "url_secret": "cache-url"})
    assert r.max_result_bytes == 1 << 20 and r.key_prefix == "omnicore:{plugin}:"
    assert r.describe()["host"] is None and r.describe()["url_from_secret"] == "cache-url"


def test_password_to_unverified_server_reaches_every_role_and_the_console() -> None:
    """The operator's exception (specs/abi.md §4.12, Passwords) holds for the connector's role
    and each plugin's, from url or url_secret; the console and the audit show it."""
    secrets = {"pw": b"pw", "rpw": b"rpw", "whole": b"mysql://u:pw@h/d"}
    for data in ({"url": "mysql://u@h/d", "secret": "pw"}, {"url_secret": "whole"}):
        c = db_connector("o", {"kind": "mysql", "password_to_unverified_server": "allow",
                               "plugins": {"r": {"user": "r", "secret": "rpw"}}, **data})
        assert c.target(secrets.get).password_ok
        assert c.target_for(secrets.get, "r").password_ok
        assert c.describe()["password_to_unverified_server"] == "allow"
    c = db_connector("o", {"kind": "postgres", "url": "postgresql://u@h/d", "secret": "pw",
                           "password_to_unverified_server": "refuse"})
    assert not c.target(secrets.get).password_ok
    assert "password_to_unverified_server" not in c.describe()
    v = db_connector("o", {"kind": "postgres", "url": "postgresql://u@h/d?sslmode=verify-full",
                           "secret": "pw"})
    assert v.target(secrets.get).password_ok  # verified: no exception needed


def test_the_password_comes_from_the_secret_store() -> None:
    secrets = {"pw": b"s3cret-pw", "whole": b"redis://:other-pw@cache:6380/2"}
    c = db_connector("o", {"kind": "postgres", "url": "postgresql://shop@db/shop",
                           "secret": "pw"})
    assert c.target(secrets.get).password == "s3cret-pw"
    r = db_connector("r", {"kind": "redis", "url_secret": "whole"})
    t = r.target(secrets.get)
    assert (t.host, t.port, t.database, t.password) == ("cache", 6380, "2", "other-pw")
    with pytest.raises(LookupError, match="secret missing is not set"):
        db_connector("o", {"kind": "mysql", "url": "mysql://u@h/d",
                           "secret": "missing"}).target(secrets.get)


def test_http_and_database_connectors_live_side_by_side() -> None:
    config = {"api": {"base_url": "https://api.example.com", "auth": "none", "headers": {},
                      "allow_addresses": [], "kind": "http"},
              "orders": {"kind": "postgres", "url": "postgresql://u@h/d", "auth": "none",
                         "headers": {}, "allow_addresses": []}}
    assert list(connectors_from(config)) == ["api"]
    assert list(db_connectors_from(config)) == ["orders"]


def test_applying_new_connectors_audits_each_change_without_secrets() -> None:
    old = {"orders": db_connector("orders", {"kind": "postgres", "url": "postgresql://u@h/d",
                                             "secret": "pw"})}
    dbs = Databases(old)
    seen: list[tuple[str, str, Any, Any]] = []
    new = {"orders": db_connector("orders", {"kind": "postgres", "url": "postgresql://u@h/d",
                                             "secret": "pw", "pool_size": 8}),
           "cache": db_connector("cache", {"kind": "redis", "url": "redis://h/0"})}
    assert dbs.apply(new, lambda *a: seen.append(a)) == ["cache", "orders"]
    assert [(a, t) for a, t, _, _ in seen] == [("connector.add", "connector:cache"),
                                              ("connector.change", "connector:orders")]
    assert seen[1][2]["pool_size"] == 4 and seen[1][3]["pool_size"] == 8
    assert dbs.apply({}, lambda *a: seen.append(a)) == ["cache", "orders"]
    assert seen[-1][0] == "connector.remove" and seen[-1][3] is None
