"""``omnicore backup FILE`` and ``omnicore restore FILE``: an embedded (SQLite) app's data.

The backup is consistent while the app's host runs (SQLite's online backup API); the restore
needs the host stopped. An app on PostgreSQL (``storage.url``) is backed up with the
database's own tools: ``pg_dump -Fc`` and ``pg_restore`` (README).
"""

from __future__ import annotations

from pathlib import Path

import click

from omnicore.cli.appdata import app_option
from omnicore.cli.main import CONFIG_FILE, main
from omnicore.errors import ConfigError

__all__ = ["backup", "restore"]

_APP = app_option(envvar="OMNICORE_APPDIR")


def _data_dir(appdir: Path) -> Path:
    from omnicore.config import load_config

    path = appdir / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"no {CONFIG_FILE} in {appdir}; pass --app APPDIR", source=str(path))
    cfg = load_config(path)
    if cfg.storage.url is not None:
        raise ConfigError("this app's storage is PostgreSQL (storage.url): back it up with "
                          "`pg_dump -Fc` and bring it back with `pg_restore` (README, "
                          "\"Backups\")", key="storage.url")
    return Path(cfg.data_dir)


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_APP
def backup(file: Path, appdir: Path) -> None:
    """Write a consistent copy of the app's data to FILE (a tar archive; .tar.gz compressed),
    also while its host runs. It holds the secret key file: keep it as safe as the data dir."""
    from omnicore.storage import backup as take

    names = take(_data_dir(appdir), file)
    click.echo(f"backed up {', '.join(names)} to {file}")


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace the data the app has now.")
@_APP
def restore(file: Path, force: bool, appdir: Path) -> None:
    """Bring the app's data back from FILE (made by omnicore backup); the host must be
    stopped."""
    from omnicore.storage import restore as bring_back

    names = bring_back(file, _data_dir(appdir), force=force)
    click.echo(f"restored {', '.join(names)} from {file}")
