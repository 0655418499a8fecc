"""What an operator sees of a bridge, on a real host with its console and a private
redis-server: ``GET /api/v1/bridges`` (state, lag, counters, never the password), the Events
page's table, ``/metrics``, ``omnicore bridges`` (text and ``--json``, from the running host's
REST API), and a broker outage: one log line when the bridge goes down and one when it is back,
the reason on every surface, and ``/readyz`` naming it as a degradation (200: the host serves
on) until the broker returns."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from omnicore import OmniApp
from omnicore.cli import main
from omnicore.console import ConsoleModule
from tests.dbservers import Redis
from tests.hosts import CHEAP_PASSWORD_HASH
from tests.waiting import eventually


@pytest.fixture
def host(redis_server: Redis, tmp_path: Path) -> Iterator[tuple[OmniApp, str, str]]:
    """A started host with its console and ``bridges.orders`` on the private Redis; its URL
    and an admin token."""
    redis_server.client().xgroup_create("orders", "omnicore-orders", "$", mkstream=True)
    app = OmniApp("surfaces", environ={}, entry_points=False, overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(tmp_path / "plugins"),
        "console": {"port": 0, "password_hash": CHEAP_PASSWORD_HASH},
        "bridges": {"orders": {
            "kind": "redis", "url": f"redis://127.0.0.1:{redis_server.port}/0",
            "secret": "redis-password", "confirm_timeout_s": 1,
            "inbound": [{"stream": "orders", "event": "orders.created"}],
            "outbound": [{"events": ["ops.*"], "stream": "ops-out"}]}}})
    (tmp_path / "plugins").mkdir()
    module = ConsoleModule()
    app.add_module(module)
    app.secrets.set("redis-password", redis_server.password)
    app.start()
    try:
        assert module.console is not None and module.url is not None
        module.console.auth.store.add("ops", "correct horse battery", "admin")
        token, _ = module.console.auth.store.new_token("ops", "tests")
        yield app, module.url, token
    finally:
        app.stop(grace=1)


def cli(url: str, token: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["bridges", "--remote", url, *args],
                                env={"OMNICORE_TOKEN": token})
    return result.exit_code, result.stdout + result.stderr


def bridge_row(api: httpx.Client) -> dict[str, object]:
    items = api.get("/api/v1/bridges").json()["items"]
    assert [b["name"] for b in items] == ["orders"]
    return dict(items[0])


def test_a_bridge_is_seen_on_every_surface_and_its_outage_is_a_log_line_and_a_readyz_detail(
        host: tuple[OmniApp, str, str], redis_server: Redis, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="omnicore.bridges")
    app, url, token = host
    client = redis_server.client()
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                      timeout=30) as api:
        for n in range(3):
            client.xadd("orders", {"data": json.dumps({"n": n})})
        r = api.post("/api/v1/events", json={"topic": "ops.note", "data": "hello"})
        assert r.status_code == 202, r.text
        eventually(lambda: bridge_row(api)["acked"] == 3 and bridge_row(api)["published"] == 1,
                   "three entries acknowledged and one event published")
        # The held count trails the publish: the delivery is written done after the broker
        # confirmed it (finish), and the count is read from the queue at most every
        # HELD_TTL_S (a loaded CI run read 1 held beside 1 published).
        eventually(lambda: bridge_row(api)["lag"]["outbound_held"] == 0,
                   "the published delivery no longer held")
        row = bridge_row(api)
        assert (row["kind"], row["state"], row["reason"], row["host"], row["port"]) == (
            "redis", "up", None, "127.0.0.1", redis_server.port)
        assert (row["received"], row["delivered"], row["refused"], row["dropped"]) == (3, 3, 0, 0)
        assert row["lag"] == {"inbound_unsettled": 0, "outbound_held": 0}
        assert row["inbound"] == ["orders → orders.created"]
        assert row["outbound"] == ["ops.* → ops-out"]
        assert client.xlen("ops-out") == 1
        assert api.get("/readyz").json() == {"ready": True, "reasons": []}
        metrics = api.get("/metrics").text
        assert 'omnicore_bridge_up{bridge="orders",kind="redis"} 1.0' in metrics
        assert 'omnicore_bridge_acked_total{bridge="orders",kind="redis"} 3.0' in metrics
        assert 'omnicore_bridge_published_total{bridge="orders",kind="redis"} 1.0' in metrics
        page = api.get("/events").text
        assert 'data-bridge="orders"' in page and 'data-state="up"' in page
        code, out = cli(url, token)
        assert code == 0, out
        head, line = out.splitlines()[:2]
        assert head.split() == ["NAME", "KIND", "STATE", "LAG", "IN/OUT", "RECEIVED", "ACKED",
                                "PUBLISHED", "REFUSED", "DEAD", "RETRIED", "DROPPED"]
        assert line.split() == ["orders", "redis", "up", "0/0", "3", "3", "1", "0", "0", "0",
                                "0"]
        code, out = cli(url, token, "--json")
        assert code == 0, out
        assert json.loads(out)[0]["acked"] == 3
        # --app: the host serving that folder is found as other commands find it.
        appdir = tmp_path / "appdir"
        appdir.mkdir()
        (appdir / "omnicore.yaml").write_text(
            f"name: surfaces\ndata_dir: {app.data_dir}\nplugins_dir: {tmp_path / 'plugins'}\n")
        result = CliRunner().invoke(main, ["bridges", "--app", str(appdir)])
        assert result.exit_code == 0, result.output
        assert result.stdout.splitlines()[1].split()[:3] == ["orders", "redis", "up"]
        for text in (str(api.get("/api/v1/bridges").json()), page, out):
            assert redis_server.password not in text

        # The broker goes away: the bridge says so everywhere, the host stays ready.
        redis_server.halt()
        eventually(lambda: bridge_row(api)["state"] == "down", "the bridge down")
        row = bridge_row(api)
        reason = str(row["reason"])
        assert reason.startswith(("inbound[0]: ", "outbound: "))
        ready = api.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["ready"] is True
        [detail] = ready.json()["degraded"]  # the reason of the lane that failed last
        assert detail.startswith("bridge orders (redis) down: ") and "Error" in detail
        assert any(r.getMessage().startswith("bridge orders (redis) ")
                   and "is down:" in r.getMessage() and r.levelname == "WARNING"
                   for r in caplog.records)
        assert 'omnicore_bridge_up{bridge="orders",kind="redis"} 0.0' in api.get("/metrics").text
        assert 'data-state="down"' in api.get("/events").text
        code, out = cli(url, token)
        assert code == 0, out
        assert out.splitlines()[1].split()[:3] == ["orders", "redis", "down"]
        assert out.splitlines()[2].startswith("  down: ")

        # Back: the bridge comes up by itself and the detail goes.
        redis_server.resume()
        eventually(lambda: bridge_row(api)["state"] == "up", "the bridge up again", timeout=30)
        assert api.get("/readyz").json() == {"ready": True, "reasons": []}
        assert any("is back after" in r.getMessage() for r in caplog.records)


def test_no_bridge_configured_is_an_empty_list_and_says_so(
        tmp_path: Path) -> None:
    app = OmniApp("no-bridges", environ={}, entry_points=False, overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(tmp_path / "plugins"),
        "console": {"port": 0, "password_hash": CHEAP_PASSWORD_HASH}})
    (tmp_path / "plugins").mkdir()
    module = ConsoleModule()
    app.add_module(module)
    app.start()
    try:
        assert module.console is not None and module.url is not None
        module.console.auth.store.add("ops", "correct horse battery", "viewer")
        token, _ = module.console.auth.store.new_token("ops", "tests")
        with httpx.Client(base_url=module.url, timeout=30) as anon:
            assert anon.get("/api/v1/bridges").status_code == 401
        code, out = cli(module.url, token)
        assert (code, out.strip()) == (0, "no bridges configured (bridges: in omnicore.yaml)")
        # No host serving the folder: one clear error, not an empty list.
        (tmp_path / "idle").mkdir()
        (tmp_path / "idle" / "omnicore.yaml").write_text(
            f"name: idle\ndata_dir: {tmp_path / 'idle' / 'data'}\n")
        result = CliRunner().invoke(main, ["bridges", "--app", str(tmp_path / "idle")])
        assert result.exit_code == 1
        assert "no running host for the app in" in result.output
        assert "id=\"bridges\"" not in httpx.get(
            f"{module.url}/events", headers={"Authorization": f"Bearer {token}"}).text
    finally:
        app.stop(grace=1)
