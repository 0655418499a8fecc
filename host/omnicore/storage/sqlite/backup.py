"""Backups of an embedded app: one archive of its SQLite databases and its secret key.

:func:`backup` copies each database with SQLite's online backup API, so the copy is one
consistent moment of it while a host goes on writing (the backup reads in one transaction; the
WAL lets the host write beside it), then packs the copies into a tar archive (gzip when the
name ends in ``.gz`` or ``.tgz``), written 0600 and renamed into place whole. The key file goes
in too: without it the secrets in ``omnicore.db`` do not open (an app keyed by
``OMNICORE_SECRET_KEY`` has no key file, and its restore needs that same key).

:func:`restore` takes the data dir's lock (so never under a running host), checks every
member (only the known names; each database must pass ``PRAGMA integrity_check``) before it
replaces anything, then moves each file into place, with any ``-wal``/``-shm`` of the old one
removed first.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import tarfile
import tempfile
from pathlib import Path

from omnicore.errors import ConfigError
from omnicore.storage.datadir import DataDirLock, private_dir
from omnicore.storage.secrets import KEY_FILE
from omnicore.storage.sqlite.database import DB_FILE
from omnicore.storage.sqlite.users import USERS_FILE

__all__ = ["DATABASES", "backup", "restore"]

#: The databases of a data dir, in the order they are copied.
DATABASES = (DB_FILE, USERS_FILE)
_MEMBERS = (*DATABASES, KEY_FILE)


def _compressed(path: Path) -> bool:
    return path.name.endswith((".gz", ".tgz"))


def _copy_database(source: Path, target: Path) -> None:
    # A plain connection (a read-only one cannot open a WAL database whose -shm is absent);
    # it only reads.
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(target)
        try:
            src.backup(dst)  # every page in one step: one read transaction, one moment
        finally:
            dst.close()
    finally:
        src.close()


def backup(data_dir: Path, dest: Path) -> list[str]:
    """Write the archive of ``data_dir`` to ``dest``; the names it holds."""
    if not (data_dir / DB_FILE).is_file():
        raise ConfigError(f"no {DB_FILE} in {data_dir}: nothing to back up (has the app run "
                          "here?)", key="data_dir", value=str(data_dir))
    dest.parent.mkdir(parents=True, exist_ok=True)
    names = []
    with tempfile.TemporaryDirectory(prefix=".omnicore-backup-", dir=dest.parent) as tmp:
        for name in _MEMBERS:
            source = data_dir / name
            if not source.is_file():
                continue
            if name == KEY_FILE:
                (Path(tmp) / name).write_bytes(source.read_bytes())
            else:
                _copy_database(source, Path(tmp) / name)
            names.append(name)
        partial = Path(tmp) / "archive"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as raw, (
                tarfile.open(fileobj=raw, mode="w:gz") if _compressed(dest)
                else tarfile.open(fileobj=raw, mode="w")) as tar:
            for name in names:
                tar.add(Path(tmp) / name, arcname=name)
        os.replace(partial, dest)
    return names


def restore(archive: Path, data_dir: Path, *, force: bool = False) -> list[str]:
    """Put the databases and key of ``archive`` into ``data_dir``; the names restored.

    Refused (DataDirLocked) while a host holds the data dir, and (ConfigError) when the data
    dir has an app's data already and ``force`` is not given.
    """
    if not archive.is_file():
        raise ConfigError(f"no backup file {archive}", value=str(archive))
    private_dir(data_dir)
    lock = DataDirLock(data_dir)
    lock.acquire(purpose="omnicore restore")
    try:
        if (data_dir / DB_FILE).is_file() and not force:
            raise ConfigError(f"{data_dir} holds an app's data already; pass --force to "
                              "replace it with the backup", key="data_dir",
                              value=str(data_dir))
        with tempfile.TemporaryDirectory(prefix=".omnicore-restore-", dir=data_dir) as tmp:
            names = _unpack(archive, Path(tmp))
            for name in names:
                target = data_dir / name
                for suffix in ("-wal", "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(f"{target}{suffix}")
                os.chmod(Path(tmp) / name, 0o600)
                os.replace(Path(tmp) / name, target)
        return names
    finally:
        lock.release()


def _unpack(archive: Path, into: Path) -> list[str]:
    try:
        with tarfile.open(archive, "r:gz" if _compressed(archive) else "r:") as tar:
            members = tar.getmembers()
            bad = [m.name for m in members if m.name not in _MEMBERS or not m.isfile()]
            if bad or DB_FILE not in {m.name for m in members}:
                raise ConfigError(f"{archive} is not an omnicore backup (it holds "
                                  f"{', '.join(m.name for m in members) or 'nothing'}; a "
                                  f"backup holds {DB_FILE} and maybe {USERS_FILE}, {KEY_FILE})",
                                  value=str(archive))
            tar.extractall(into, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ConfigError(f"{archive} is not a readable backup: {exc}",
                          value=str(archive)) from None
    for m in members:
        if m.name in DATABASES:
            _check(into / m.name, archive)
    return [m.name for m in members]


def _check(path: Path, archive: Path) -> None:
    try:
        conn = sqlite3.connect(path)
        try:
            verdict = conn.execute("PRAGMA integrity_check").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        verdict = str(exc)
    if verdict != "ok":
        raise ConfigError(f"{path.name} in {archive} is damaged ({verdict}); nothing was "
                          "restored", value=str(archive))
