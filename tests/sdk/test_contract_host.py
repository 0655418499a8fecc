"""The real host answers every case of sdk/contract/host.json as the table says: the table the
SDKs' test hosts are held to (test_contract_fakes.py) is the host's, not a guess.

Redis runs on a real redis-server and SQL on a real PostgreSQL, each through a WAT plugin
calling the host functions (tests/db_fixtures.py), so the answer is the §3.3 block a plugin
reads; kv runs on the app's SQLite through the capability's own functions."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from omnicore.app import OmniApp
from omnicore.capabilities import config as config_cap
from omnicore.capabilities import kv as kv_cap
from omnicore.egress.db.config import DEFAULT_KEY_PREFIX
from omnicore.egress.db.redis import COMMANDS
from omnicore.errors import GuestError
from omnicore.sandbox.capability import PluginContext, Status
from omnicore.sandbox.pluginlog import PluginLog
from tests.db_fixtures import (  # noqa: F401 - fixtures
    REDIS_WAT,
    Db,
    framed,
    redis_server,
    sql_app,
    sql_wasm,
)
from tests.dbservers import Redis
from tests.sdk.contract import TABLE, Outcome, expected, outcome_of_block, request


def test_the_statuses_are_the_hosts() -> None:
    assert TABLE["statuses"] == {name: code for name, code in vars(Status).items()
                                 if name.isupper() and isinstance(code, int)}


def test_the_redis_command_list_and_prefix_are_the_hosts() -> None:
    assert {k: list(v) for k, v in COMMANDS.items()} == TABLE["redis"]["commands"]
    assert TABLE["redis"]["key_prefix"] == DEFAULT_KEY_PREFIX


def _outcome(db: Db, handler: str, conn: str, req: dict[str, Any]) -> Outcome:
    try:
        text = db.call(handler, framed(conn, json.dumps(req).encode())).decode()
    except GuestError as exc:
        return outcome_of_block(True, str(exc.guest_message))
    return outcome_of_block(False, text)


@pytest.fixture(scope="module")
def redis_db(redis_server: Redis,  # noqa: F811
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[Db]:
    root = tmp_path_factory.mktemp("contract-redis")
    app = OmniApp("contract", entry_points=False, environ={}, builtin_extensions=None,
                  overrides={"data_dir": str(root / "data"), "plugins_dir": str(root / "plugins"),
                             "sandbox": {"watch": False}, "connectors": {
                      "cache": {"kind": "redis", "secret": "cache-pw",
                                "url": f"redis://127.0.0.1:{redis_server.port}/0"}}})
    app.start()
    app.secrets.set("cache-pw", redis_server.password)
    app.plugins.load(sql_wasm("contract", REDIS_WAT), grants={"redis": {"connectors": ["cache"]}},
                     limits={"timeout_ms": 5000})
    yield Db(app, "contract")
    app.stop(grace=0)


@pytest.mark.parametrize("case", TABLE["redis"]["cases"], ids=lambda c: c["name"])
def test_redis_answers_each_case(case: dict[str, Any], redis_db: Db,
                                 redis_server: Redis) -> None:  # noqa: F811
    redis_server.client().flushdb()
    got = [_outcome(redis_db, "command", "cache", request(step)) for step in case["steps"]]
    want = [expected(step) for step in case["steps"]]
    for i, step in enumerate(case["steps"]):
        # A time to live counts down on a real server while the steps run.
        # Any answer within the 2 s the table allows is the one it names (the server rounds:
        # PEXPIRE 1500 then TTL answers 2 at once and 1 a millisecond later).
        if step.get("clock") and got[i][0] == "ok" and \
                step["reply"] - 2 <= got[i][1] <= step["reply"]:
            got[i] = ("ok", step["reply"])
    assert got == want


def test_sql_answers_each_case(sql_app: Callable[..., Db], pg_url: str) -> None:  # noqa: F811
    url = urlsplit(pg_url)
    bare = url._replace(netloc=f"{url.username}@{url.hostname}:{url.port}").geturl()
    # The table's setup makes its table through the plugin: the operator's widening.
    db = sql_app({"orders": {"kind": "postgres", "url": bare, "secret": "orders-pw",
                             "statements": {"allow": ["create", "truncate"]}}},
                 {"sql": {"connectors": ["orders"]}}, secrets={"orders-pw": url.password or ""})
    for statement in TABLE["sql"]["setup"]:
        db.execute("orders", statement)
    for case in TABLE["sql"]["answers"]:
        handler = "query" if "query" in case else "execute"
        assert _outcome(db, handler, "orders", case[handler]) == ("ok", case["answer"])
    # What a fake must refuse is never what the host answered.
    answered = [case["answer"] for case in TABLE["sql"]["answers"]]
    assert not [bad for bad in TABLE["sql"]["not_answers"] if bad["answer"] in answered]


def test_kv_answers_each_case(make_app: Callable[..., OmniApp]) -> None:
    app = make_app(builtin_extensions=None, overrides={"sandbox": {"watch": False}})
    app.start()
    cap = kv_cap.for_app(app)
    state = cap.bind(PluginContext("contract", {}, {}, PluginLog("contract")))
    wit = {f.name: f.impl for f in cap.wit}
    codes = {case: name for name, code in TABLE["statuses"].items()
             for number, case in Status.WIT_CASES.items() if number == code}
    for step in TABLE["kv"]["steps"]:
        op, *args = step["do"]
        if op == "set":
            args[1] = args[1].encode()
        answer = wit[op](state, *args)
        if "err" in answer:
            assert ("error", codes[answer["err"]]) == expected(step), step
        else:
            value = answer["ok"].decode() if isinstance(answer["ok"], bytes) else answer["ok"]
            assert ("ok", value) == expected(step), step


def test_config_answers_each_case() -> None:
    given = TABLE["config"]["given"]
    for step in TABLE["config"]["steps"]:
        value = config_cap.lookup(given, step["key"])
        assert (value.decode() if value is not None else None) == step["reply"], step
