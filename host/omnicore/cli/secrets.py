"""``omnicore secrets``: set, list, delete and rotate an app's secrets (never print values).

The store is the app's database plus its key (``OMNICORE_SECRET_KEY`` or
``<data_dir>/secret.key``); these commands work whether or not ``omnicore run`` serves the app.
Every change is recorded in the app's audit log by name (origin ``cli``).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from omnicore.cli.appdata import app_option, load_app_config, open_app_storage
from omnicore.cli.main import main

if TYPE_CHECKING:
    from omnicore.storage import Storage
    from omnicore.storage.secrets import SecretStore

__all__ = ["secrets"]

_APP = app_option()


@contextmanager
def _store(appdir: Path) -> Iterator[tuple[SecretStore, Storage]]:
    from omnicore.storage.secrets import SecretStore

    cfg = load_app_config(appdir)
    storage = open_app_storage(cfg)
    try:
        yield SecretStore(storage.secrets, cfg.data_dir), storage
    finally:
        storage.close()


@main.group()
def secrets() -> None:
    """Manage the app's secrets (encrypted at rest; plugins see only what a grant exposes)."""


@secrets.command("set")
@click.argument("name")
@_APP
def secrets_set(name: str, appdir: Path) -> None:
    """Set secret NAME to the value read from stdin (one trailing newline is dropped)."""
    if sys.stdin.isatty():
        click.echo(f"value for {name} (then Ctrl-D):", err=True)
    value = sys.stdin.buffer.read()
    if value.endswith(b"\r\n"):
        value = value[:-2]
    elif value.endswith(b"\n"):
        value = value[:-1]
    if not value:
        raise click.UsageError("the value on stdin is empty; nothing was stored")
    from omnicore.accounts.audit import HIDDEN, Actor, record

    with _store(appdir) as (store, storage):
        existed = name in store
        store.set(name, value)
        record(storage, Actor.cli(), "secret.set", f"secret:{name}",
               HIDDEN if existed else None, HIDDEN)
    click.echo(f"secret {name} set ({len(value)} bytes)", err=True)


@secrets.command("list")
@_APP
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array of names.")
def secrets_list(appdir: Path, as_json: bool) -> None:
    """List the names of the secrets that are set (never their values)."""
    with _store(appdir) as (store, _storage):
        names = store.names()
    if as_json:
        click.echo(json.dumps(names))
    else:
        for name in names:
            click.echo(name)


@secrets.command("delete")
@click.argument("name")
@_APP
def secrets_delete(name: str, appdir: Path) -> None:
    """Delete secret NAME (exit 1 if it was not set)."""
    from omnicore.accounts.audit import HIDDEN, Actor, record

    with _store(appdir) as (store, storage):
        found = store.delete(name)
        if found:
            record(storage, Actor.cli(), "secret.delete", f"secret:{name}", HIDDEN, None)
    if not found:
        raise click.ClickException(f"no secret named {name!r}")
    click.echo(f"secret {name} deleted", err=True)


@secrets.command("rotate")
@_APP
@click.option("--new-key-stdin", is_flag=True,
              help="Read the new key (base64) from stdin; needed when the key comes from "
                   "OMNICORE_SECRET_KEY.")
def secrets_rotate(appdir: Path, new_key_stdin: bool) -> None:
    """Re-encrypt every secret under a new key (a key file is replaced in place)."""
    new = sys.stdin.read().strip() if new_key_stdin else None
    from omnicore.accounts.audit import Actor, record

    with _store(appdir) as (store, storage):
        key_id = store.rotate(new)
        source = store.key_source
        record(storage, Actor.cli(), "secret.rotate", None, None, {"key": key_id})
    hint = ("; now set OMNICORE_SECRET_KEY to the new key" if source == "env"
            else f" (key file {source})")
    click.echo(f"secrets re-encrypted under key {key_id}{hint}", err=True)
