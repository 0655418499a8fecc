"""An app folder's identity: the id a host answers with, so the CLI reaches only its own host.

``<data_dir>/app-id.json`` holds a random id and the data dir it was made for (its real
path). A host makes it on start when it is missing, and makes a new one when the file names
another folder: a folder copied with ``cp -r`` (the scale-out guide's ``cp -r build/demo
host-a``) gets an identity of its own the first time its own host starts, and until then it
has none. ``omnicore run`` writes the id into ``console.json`` and answers it on
``/healthz``; the CLI (:mod:`omnicore.cli.remote`) asks a host only when the id of the app
folder it was given, the console file's and the host's answer are one (specs/host.md).

Standard library only: the CLI reads it before it imports any host code.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path

__all__ = ["APP_ID_FILE", "app_id", "ensure_app_id"]

APP_ID_FILE = "app-id.json"

log = logging.getLogger("omnicore.app")


def _real(data_dir: Path) -> str:
    return os.path.realpath(data_dir)


def _read(data_dir: Path) -> tuple[str | None, str | None]:
    try:
        doc = json.loads((data_dir / APP_ID_FILE).read_text(encoding="utf-8"))
        found, made_for = doc["app_id"], doc["data_dir"]
    except (OSError, ValueError, KeyError, TypeError):
        return None, None
    if not isinstance(found, str) or not isinstance(made_for, str):
        return None, None
    return found, made_for


def app_id(data_dir: Path) -> str | None:
    """The id of the app whose data dir is ``data_dir``; None when it has none yet, or the
    file there was made for another folder (this one is a copy)."""
    found, made_for = _read(data_dir)
    if found is None or made_for != _real(data_dir):
        return None
    return found


def ensure_app_id(data_dir: Path) -> str:
    """``data_dir``'s id, made now when it has none (or a copy's, which names the folder it
    was copied from: one line says so)."""
    found = app_id(data_dir)
    if found is not None:
        return found
    old, made_for = _read(data_dir)
    new = f"app-{secrets.token_hex(8)}"
    data_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"app_id": new, "data_dir": _real(data_dir)})
    path = data_dir / APP_ID_FILE
    if old is None:
        try:  # two hosts sharing a data dir start at once: the first one's id stays
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            again = app_id(data_dir)
            if again is not None:
                return again
        else:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            return new
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    if made_for is not None:
        log.warning("this app folder's data dir %s was copied from %s: it gets an app id of "
                    "its own (%s), so the CLI given this folder reaches this host only",
                    data_dir, made_for, new)
    return new
