"""``omnicore users`` against a real app data dir: the accounts it writes are the ones the
console reads through ``app.storage.users`` (both through the storage interface)."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from omnicore.accounts.users import UserStore
from omnicore.app import OmniApp
from omnicore.cli import main

PASSWORD = "correct horse battery"


def invoke(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), input=stdin, catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def make_app(tmp_path: Path) -> Path:
    appdir = tmp_path / "app"
    appdir.mkdir()
    (appdir / "omnicore.yaml").write_text("name: t\ndata_dir: data\n")
    return appdir


def test_users_written_by_the_cli_sign_in_to_the_apps_console(tmp_path: Path) -> None:
    appdir = make_app(tmp_path)
    app = str(appdir)
    assert invoke("users", "list", "--app", app)[1] == \
        f"no users (omnicore users add NAME --app {app})\n"
    assert invoke("users", "add", "ada", "--password-stdin", "--app", app,
                  stdin=PASSWORD + "\n")[0] == 0
    assert invoke("users", "add", "bob", "--role", "viewer", "--password-stdin", "--app", app,
                  stdin=PASSWORD + "\n")[0] == 0
    code, _, err = invoke("users", "add", "ada", "--password-stdin", "--app", app,
                          stdin=PASSWORD + "\n")
    assert code == 1 and f"already exists (omnicore users passwd ada --app {app})" in err
    code, out, _ = invoke("users", "list", "--app", app)
    assert code == 0 and [line.split()[:2] for line in out.splitlines()] == [
        ["ada", "admin"], ["bob", "viewer"]]
    code, secret, _ = invoke("users", "token", "ada", "--label", "ci", "--app", app)
    assert code == 0 and secret.strip().startswith("oc_")
    assert (appdir / "data" / "console.db").is_file()

    omni = OmniApp("t", overrides={"data_dir": str(appdir / "data")})
    try:
        store = UserStore(omni.storage.users)
        ada = store.authenticate("ada", PASSWORD)
        assert ada is not None and ada.is_admin
        assert store.authenticate("ada", "wrong password") is None
        assert store.token_user(secret.strip()) == ada
        assert invoke("users", "delete", "bob", "--app", app)[0] == 0
        assert store.get("bob") is None  # a CLI change is seen by the running app at once
        code, _, err = invoke("users", "delete", "bob", "--app", app)
        assert code == 1 and "no user 'bob'" in err
    finally:
        omni.storage.close()
