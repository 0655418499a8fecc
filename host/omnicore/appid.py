"""An app folder's identity: the id a host answers with, so the CLI reaches only its own host.

``<data_dir>/app-id.json`` holds a random id and the data dir it was made for (its real
path). A host makes it on start when it is missing, and makes a new one when the file names
another folder: a folder copied with ``cp -r`` (the scale-out guide's ``cp -r build/demo
host-a``) gets an identity of its own the first time its own host starts, and until then it
has none. ``omnicore run`` writes the id into ``console.json`` and answers it on
``/healthz``; the CLI (:mod:`omnicore.cli.remote`) asks a host only when the id of the app
folder it was given, the console file's and the host's answer are one (specs/host.md).

The id is no proof: ``app-id.json`` is readable by anyone and ``/healthz`` answers it to
anyone, so a process on a dead host's port could answer it too. ``<data_dir>/app-key.json``
(mode 0600, made with the id and for it: a copied folder's is made again with its new id)
holds a secret no host serves: the CLI sends a random challenge on ``/healthz?challenge=``
and uses the host only when it answers :func:`proof` of it under that secret (checked in
constant time), before the admin token is sent anywhere.

Standard library only: the CLI reads it before it imports any host code.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
from pathlib import Path

__all__ = [
    "APP_ID_FILE",
    "APP_KEY_FILE",
    "app_id",
    "app_key",
    "ensure_app_id",
    "ensure_app_key",
    "is_challenge",
    "proof",
]

APP_ID_FILE = "app-id.json"
APP_KEY_FILE = "app-key.json"

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


def app_key(data_dir: Path, ident: str) -> bytes | None:
    """The secret of the app ``ident`` whose data dir is ``data_dir`` (``app-key.json``,
    readable by the folder's owner only); None when there is none for this id and folder,
    or it cannot be read (another user, no host started here yet)."""
    try:
        doc = json.loads((data_dir / APP_KEY_FILE).read_text(encoding="utf-8"))
        key, made_id, made_for = doc["key"], doc["app_id"], doc["data_dir"]
        if made_id != ident or made_for != _real(data_dir):
            return None
        secret = bytes.fromhex(key)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return secret if len(secret) >= 32 else None


def ensure_app_key(data_dir: Path, ident: str) -> bytes:
    """``data_dir``'s secret for the id ``ident``, made now (mode 0600, never served) when
    there is none for it: a copied folder's file names the original's id and is replaced."""
    found = app_key(data_dir, ident)
    if found is not None:
        return found
    secret = secrets.token_bytes(32)
    text = json.dumps({"key": secret.hex(), "app_id": ident, "data_dir": _real(data_dir)})
    path = data_dir / APP_KEY_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    try:
        if path.exists():  # a copy's, or another id's: replaced
            os.replace(tmp, path)
        else:  # hosts sharing a data dir start at once: the first one's stays
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
    finally:
        tmp.unlink(missing_ok=True)
    again = app_key(data_dir, ident)
    return again if again is not None else secret


def is_challenge(text: object) -> bool:
    """Whether ``text`` is a challenge a host answers: 32 to 128 hex digits."""
    return isinstance(text, str) and 32 <= len(text) <= 128 and \
        all(c in "0123456789abcdef" for c in text)


def proof(secret: bytes, ident: str, challenge: str) -> str:
    """The host's answer to ``challenge``: HMAC-SHA256 under the app's secret of the id and
    the challenge (hex)."""
    import hashlib
    import hmac

    message = f"omnicore-app-proof:v1:{ident}:{challenge}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()
