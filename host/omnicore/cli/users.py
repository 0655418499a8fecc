"""``omnicore users``: the console's accounts, kept in ``<data_dir>/console.db`` or the
cluster's database (``storage.url``; ``OMNICORE_STORAGE__URL`` alone is enough, from any
machine).

Works whether or not the host is running (SQLite in WAL mode): a user added here can sign
in at once. Every change is recorded in the app's audit log (origin ``cli``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from omnicore.cli.appdata import app_option, open_app_storage
from omnicore.cli.main import CONFIG_FILE, hint, main
from omnicore.errors import ConfigError

if TYPE_CHECKING:
    from omnicore.accounts.users import UserStore

__all__ = ["users"]

_URL_ENV = "OMNICORE_STORAGE__URL"

_APP = app_option("The app folder (default: $OMNICORE_APPDIR or here).",
                  envvar="OMNICORE_APPDIR", show_default=None)


def _store(appdir: Path) -> UserStore:
    from omnicore.accounts.users import UserStore

    path = appdir / CONFIG_FILE
    # A cluster's accounts live in its database: with its URL in the environment, any
    # machine manages them, no app folder needed.
    if not path.is_file() and not os.environ.get(_URL_ENV):
        raise ConfigError(f"no {CONFIG_FILE} in {appdir}; pass --app DIR (the folder of "
                          f"the app whose console this is), or set {_URL_ENV} to the "
                          "cluster's database URL", source=str(path))
    from omnicore.accounts.users import hasher_for
    from omnicore.config import load_config

    cfg = load_config(path if path.is_file() else None)
    storage = open_app_storage(cfg)
    return UserStore(storage.users, owner=storage,
                     hasher=hasher_for(**cfg.console.password_hash.model_dump()))


def _audit(store: UserStore, verb: str, target: str, after: object = None) -> None:
    from omnicore.accounts.audit import Actor, record

    if store.owner is not None:
        record(store.owner, Actor.cli(), verb, target, None, after)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    value: str = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    return value


@main.group()
def users() -> None:
    """Console users: add, list, delete, passwd, token."""


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(["admin", "viewer"]), default="admin",
              show_default=True, help="admin changes things; viewer only reads.")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@_APP
def add(name: str, role: str, password_stdin: bool, appdir: Path) -> None:
    """Add console user NAME (prompts for the password)."""
    from omnicore.accounts.users import check_username

    check_username(name)
    store = _store(appdir)
    try:
        if store.get(name) is not None:
            raise ConfigError(f"user {name!r} already exists "
                              f"({hint(f'omnicore users passwd {name}')})")
        store.add(name, _password(password_stdin), role)  # type: ignore[arg-type]
        _audit(store, "user.add", f"user:{name}", {"role": role})
    finally:
        store.close()
    click.echo(f"added {role} {name}")


@users.command("list")
@_APP
def list_users(appdir: Path) -> None:
    """List console users."""
    store = _store(appdir)
    try:
        found = store.users()
    finally:
        store.close()
    if not found:
        click.echo(f"no users ({hint('omnicore users add NAME')})")
    for user in found:
        since = time.strftime("%Y-%m-%d", time.localtime(user.created))
        click.echo(f"{user.name:<24} {user.role:<7} since {since}")


@users.command("delete")
@click.argument("name")
@_APP
def delete(name: str, appdir: Path) -> None:
    """Delete console user NAME (their sessions and tokens end)."""
    store = _store(appdir)
    try:
        if not store.delete(name):
            raise ConfigError(f"no user {name!r}")
        _audit(store, "user.delete", f"user:{name}")
    finally:
        store.close()
    click.echo(f"deleted {name}")


@users.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from stdin.")
@_APP
def passwd(name: str, password_stdin: bool, appdir: Path) -> None:
    """Set NAME's password (signs their sessions out)."""
    store = _store(appdir)
    try:
        store.set_password(name, _password(password_stdin))
        _audit(store, "user.passwd", f"user:{name}")
    finally:
        store.close()
    click.echo(f"password of {name} changed")


@users.command("token")
@click.argument("name")
@click.option("--label", default="cli", show_default=True, help="What the token is for.")
@_APP
def token(name: str, label: str, appdir: Path) -> None:
    """Create an API token for NAME and print it (shown once; use as OMNICORE_TOKEN)."""
    store = _store(appdir)
    try:
        secret, made = store.new_token(name, label)
        _audit(store, "token.add", f"token:{made.id}", {"label": made.label, "user": name})
    finally:
        store.close()
    click.echo(secret)
