"""The app folder an operator command opens: its config and its storage, read directly.

``omnicore kv``, ``jobs``, ``settings``, ``secrets``, ``vectors``, ``users`` and ``workflows``
open the app's database themselves, so they work whether or not ``omnicore run`` serves the
app. Host code is imported inside the functions: ``omnicore --help`` and the commands that
talk to a running host import none of it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from omnicore.cli.main import CONFIG_FILE
from omnicore.errors import ConfigError

if TYPE_CHECKING:
    from omnicore.config import OmniConfig
    from omnicore.storage import Storage

__all__ = ["app_option", "app_storage", "config_path", "load_app_config", "open_app_storage"]

_HINT = "pass --app APPDIR"

F = TypeVar("F", bound=Callable[..., Any])


def app_option(help: str = "The app folder (its omnicore.yaml names the data_dir).", *,
               envvar: str | None = None, show_default: str | None = "here"
               ) -> Callable[[F], F]:
    """The ``--app APPDIR`` option of a command that opens an app folder: the command gets
    it as ``appdir`` (a Path; default: here)."""
    return click.option("--app", "appdir", type=click.Path(file_okay=False, path_type=Path),
                        default=".", envvar=envvar, show_default=show_default, help=help)


def config_path(appdir: Path, hint: str = _HINT) -> Path:
    """``appdir``'s omnicore.yaml; a ConfigError ending in ``hint`` when there is none."""
    path = appdir / CONFIG_FILE
    if not path.is_file():
        raise ConfigError(f"no {CONFIG_FILE} in {appdir}; {hint}", source=str(path))
    return path


def load_app_config(appdir: Path, hint: str = _HINT) -> OmniConfig:
    """``appdir``'s config (see :func:`config_path`)."""
    from omnicore.config import load_config

    return load_config(config_path(appdir, hint))


def open_app_storage(cfg: OmniConfig) -> Storage:
    """The storage ``cfg`` names, opened; the caller closes it."""
    from omnicore.storage import open_storage

    return open_storage(cfg.data_dir, synchronous=cfg.storage.synchronous, url=cfg.storage.url)


@contextmanager
def app_storage(appdir: Path, hint: str = _HINT) -> Iterator[Storage]:
    """``appdir``'s storage, closed when the block ends."""
    storage = open_app_storage(load_app_config(appdir, hint))
    try:
        yield storage
    finally:
        storage.close()
