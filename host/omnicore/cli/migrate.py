"""``omnicore migrate``: apply an app's pending schema steps explicitly, or list them.

For hosts told not to migrate at start (``storage.migrate: false``): a pre-deploy job runs
``omnicore migrate`` before the new version's hosts start (specs/host.md "Upgrades"), and
``omnicore migrate --check`` exits 1 while steps are pending. The steps are expand-then-contract,
so the previous version's hosts keep running on the schema they leave.
"""

from __future__ import annotations

from pathlib import Path

import click

from omnicore.cli.main import CONFIG_FILE
from omnicore.errors import ConfigError

__all__ = ["migrate"]


@click.command()
@click.option("--app", "appdir", default=".", envvar="OMNICORE_APPDIR",
              type=click.Path(file_okay=False, path_type=Path),
              help="The app folder, whose omnicore.yaml (and OMNICORE_STORAGE__URL) names the "
                   "database (default: $OMNICORE_APPDIR or here).")
@click.option("--url", default=None, metavar="URL",
              help="A PostgreSQL database by URL instead of an app's.")
@click.option("--check", is_flag=True,
              help="Only list the pending steps; exit 1 when there are some.")
def migrate(appdir: Path, url: str | None, check: bool) -> None:
    """Apply the schema steps this omnicore has and the database lacks."""
    from omnicore.storage import Storage, open_storage
    from omnicore.storage.migration import host_name

    storage: Storage
    if url is not None:
        from omnicore.storage.postgres import PostgresStorage

        storage = PostgresStorage(url, schema="inspect")
    else:
        from omnicore.config import load_config

        path = appdir / CONFIG_FILE
        if not path.is_file():
            raise ConfigError(f"no {CONFIG_FILE} in {appdir}; pass --app DIR or --url URL",
                              source=str(path))
        cfg = load_config(path)
        storage = open_storage(cfg.data_dir, synchronous=cfg.storage.synchronous,
                               url=cfg.storage.url, schema="inspect")
    try:
        backend = storage.backend  # type: ignore[attr-defined]
        todo = backend.pending() if check else backend.migrate()
        host = host_name(backend.latest_schema)
        if not todo:
            click.echo(f"{backend.location}: the schema is up to date for {host}")
            return
        verb = "pending" if check else "applied"
        click.echo(f"{backend.location}: {len(todo)} step{'s' if len(todo) != 1 else ''} "
                   f"{verb} for {host}:")
        for step in todo:
            click.echo(f"  {step}")
    finally:
        storage.close()
    if check:
        raise click.exceptions.Exit(1)
