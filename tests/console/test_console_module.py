"""The console module's life: it answers /healthz while plugins still load, and its one-time
setup link never comes back once a first admin existed."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnicore import OmniApp
from omnicore.console import ConsoleModule
from omnicore.errors import ConfigError
from omnicore.storage.sqlite.users import SQLiteUsers
from tests.console.conftest import Host, start_host


def test_healthz_answers_while_plugins_still_load(tmp_path: Path,
                                                  greeter_wasm: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    class SlowLoading:
        """Stands for a folder of plugins that takes long to load (14-60 s in the report)."""

        name = "slow-loading"

        def startup(self, app: Any) -> None:
            entered.set()
            release.wait(60)

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "greeter-rust.wasm").write_bytes(greeter_wasm.read_bytes())
    app = OmniApp("slow", overrides={"data_dir": str(tmp_path / "data"),
                                     "plugins_dir": str(plugins), "console": {"port": 0}})
    module = ConsoleModule()
    app.add_module(module)
    app.extensions.register(SlowLoading())
    starting = threading.Thread(target=app.start)
    starting.start()
    try:
        assert entered.wait(60)
        assert module.url is not None
        r = httpx.get(f"{module.url}/healthz", timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "alive"
        assert r.json()["app_id"].startswith("app-")  # the app folder's (omnicore/appid.py)
        r = httpx.get(f"{module.url}/readyz", timeout=10)
        assert r.status_code == 503 and "app is starting" in r.json()["reasons"]
    finally:
        release.set()
        starting.join(60)
    try:
        r = httpx.get(f"{module.url}/readyz", timeout=10)
        assert r.status_code == 200 and r.json()["ready"] is True
        assert app.plugins.get("greeter-rust").state == "needs-grant"  # loaded meanwhile
    finally:
        app.stop()


def setup_link(caplog: pytest.LogCaptureFixture) -> str:
    found = re.search(r"/setup\?token=(\S+)", caplog.text)
    assert found is not None, caplog.text
    return found[1]


#: What a setup link answers once an admin exists: go and sign in.
SIGN_IN = "/login?done=admin-exists"


def create_first_admin(h: Host, token: str, name: str = "root") -> str:
    """Where the link leads: "/" (made and signed in), SIGN_IN, or the error's status."""
    with h.client() as c:
        form = c.get(f"/setup?token={token}")
        if form.status_code != 200:
            return str(form.headers.get("location", form.status_code))
        r = c.post(f"/setup?token={token}", data={
            "name": name, "password": "first-admin-pw", "password2": "first-admin-pw",
            "csrf": c.cookies["omnicore_login_csrf"]})
        return str(r.headers.get("location", r.status_code))


def test_the_setup_link_never_comes_back(tmp_path: Path,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING")
    h = start_host(tmp_path, None, users=False)
    try:
        token = setup_link(caplog)
        assert create_first_admin(h, token) == "/"
        assert h.module.console is not None
        store = h.module.console.auth.store
        assert store.delete("root") and store.count() == 0   # every user deleted
        assert create_first_admin(h, token) == SIGN_IN
        with pytest.raises(ConfigError, match="first admin"):
            store.new_setup_link()
    finally:
        h.app.stop()
    caplog.clear()
    h = start_host(tmp_path, None, users=False)  # a restart on the same data dir
    try:
        assert "/setup?token=" not in caplog.text
        assert "no console users left" in caplog.text
        assert create_first_admin(h, token) == SIGN_IN
    finally:
        h.app.stop()


def test_a_user_made_from_the_shell_also_ends_the_link(
        make_host: Callable[..., Host], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("WARNING")
    h = make_host(users=False)
    token = setup_link(caplog)
    assert h.module.console is not None
    store = h.module.console.auth.store
    store.add("ops", "ops-password", "admin")  # what `omnicore users add` does
    store.delete("ops")
    assert create_first_admin(h, token) == SIGN_IN


def test_a_file_from_before_remembers_its_users(tmp_path: Path) -> None:
    path = tmp_path / "console.db"
    with sqlite3.connect(path) as db:  # the schema as older versions wrote it
        db.execute("CREATE TABLE users (name TEXT PRIMARY KEY, hash TEXT NOT NULL, "
                   "role TEXT NOT NULL, created REAL NOT NULL)")
        db.execute("INSERT INTO users VALUES ('old', 'x', 'admin', 1.0)")
    rows = SQLiteUsers(path)
    try:
        rows.delete("old")
        assert rows.had_users() and rows.count() == 0
    finally:
        rows.close()
