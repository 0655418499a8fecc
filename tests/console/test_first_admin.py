"""The first admin on a cluster (issue 33): every host prints its own setup link at start and
each of them works until any makes the first admin; from then on every link sends its holder
to sign in. Two real hosts with their consoles on one real PostgreSQL, and on SQLite a host
and its restart; ``omnicore users add`` with only the database's URL, from a folder that
holds no app."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from omnicore import OmniApp
from omnicore.cli import main
from omnicore.console import ConsoleModule
from tests.console.conftest import PASSWORD, Host
from tests.console.test_console_module import SIGN_IN, create_first_admin

Start = Callable[..., Host]


def _links(caplog: pytest.LogCaptureFixture) -> list[str]:
    return re.findall(r"/setup\?token=(\S+)", caplog.text)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """``start(name, url)``: a started host with its console, on PostgreSQL when ``url``."""
    started: list[OmniApp] = []

    def run(name: str, url: str | None = None) -> Host:
        overrides: dict[str, object] = {"data_dir": str(tmp_path / name / "data"),
                                        "plugins_dir": str(tmp_path / name / "plugins"),
                                        "console": {"port": 0}}
        if url is not None:
            overrides["storage"] = {"url": url}
        app = OmniApp("first-admin", overrides=overrides)
        module = ConsoleModule()
        app.add_module(module)
        app.start()
        started.append(app)
        return Host(app, module, tmp_path / name / "plugins", "", "", [])

    yield run
    for app in started:
        if app.state.value == "running":
            app.stop()


def _signs_in(h: Host, name: str) -> bool:
    with h.client() as c:
        page = c.get("/login")
        r = c.post("/login", data={"name": name, "password": PASSWORD,
                                   "csrf": c.cookies["omnicore_login_csrf"]})
        return page.status_code == 200 and r.status_code == 303


def test_the_older_hosts_link_makes_the_admin_and_then_every_link_says_so(
        start: Start, pg_url: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING")
    a = start("a", pg_url)
    b = start("b", pg_url)
    link_a, link_b = _links(caplog)
    assert link_a != link_b
    # A's link, although B printed one after it (the report: only the newest worked).
    assert create_first_admin(b, link_a) == "/"
    assert create_first_admin(a, link_b) == SIGN_IN
    assert create_first_admin(b, link_b) == SIGN_IN
    assert create_first_admin(a, link_a) == SIGN_IN
    with httpx.Client(base_url=a.url, timeout=30) as c:
        page = c.get(SIGN_IN)
    assert page.status_code == 200 and "An admin exists already: sign in" in page.text


def test_on_sqlite_a_restart_keeps_the_first_link(
        start: Start, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING")
    first = start("app")
    first.app.stop()
    again = start("app")
    link_1, link_2 = _links(caplog)
    assert create_first_admin(again, link_1, "root") == "/"
    assert create_first_admin(again, link_2) == SIGN_IN


def test_an_unknown_link_still_says_what_to_do(start: Start) -> None:
    h = start("app")
    with h.client() as c:
        r = c.get("/setup?token=made-up", headers={"Accept": "application/json"})
    assert r.status_code == 404 and "omnicore users add" in r.text


def test_users_add_with_only_the_database_url(
        start: Start, pg_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING")
    h = start("a", pg_url)
    [link] = _links(caplog)
    elsewhere = tmp_path / "laptop"  # no omnicore.yaml here: another machine
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("OMNICORE_STORAGE__URL", pg_url)
    r = CliRunner().invoke(main, ["users", "add", "ops", "--password-stdin"],
                           input=PASSWORD + "\n", catch_exceptions=False)
    assert r.exit_code == 0 and r.stdout == "added admin ops\n"
    assert not (elsewhere / "data").exists()
    assert _signs_in(h, "ops")
    assert create_first_admin(h, link) == SIGN_IN
    monkeypatch.delenv("OMNICORE_STORAGE__URL")
    r = CliRunner().invoke(main, ["users", "list"])
    assert r.exit_code == 1 and "OMNICORE_STORAGE__URL" in r.stderr
