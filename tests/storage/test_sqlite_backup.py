"""storage/sqlite/backup.py: a restore checks the whole archive before it replaces anything."""

from __future__ import annotations

import sqlite3
import tarfile
from pathlib import Path

import pytest

from omnicore.errors import ConfigError
from omnicore.storage import open_storage
from omnicore.storage.sqlite.backup import backup, restore


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    store = open_storage(tmp_path / "data")
    store.kv("p").set("k", b"v")
    store.close()
    return tmp_path / "data"


def _kv_rows(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "omnicore.db") as db:
        return int(db.execute("SELECT count(*) FROM kv").fetchone()[0])


def test_an_archive_with_other_files_is_refused(data_dir: Path, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger.tar"
    (tmp_path / "passwd").write_text("root:x:0:0\n")
    with tarfile.open(stranger, "w") as tar:
        tar.add(tmp_path / "passwd", arcname="../passwd")
    with pytest.raises(ConfigError, match="is not an omnicore backup"):
        restore(stranger, data_dir, force=True)
    assert _kv_rows(data_dir) == 1
    assert not any("passwd" in p.name for p in data_dir.iterdir())


def test_a_damaged_database_is_refused_and_nothing_changes(data_dir: Path,
                                                            tmp_path: Path) -> None:
    broken = tmp_path / "broken.tar"
    (tmp_path / "omnicore.db").write_bytes(b"SQLite format 3\x00" + b"\x00" * 200)
    with tarfile.open(broken, "w") as tar:
        tar.add(tmp_path / "omnicore.db", arcname="omnicore.db")
    with pytest.raises(ConfigError, match="nothing was restored"):
        restore(broken, data_dir, force=True)
    assert _kv_rows(data_dir) == 1


def test_a_plain_tar_round_trips_without_a_key_file(data_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "b.tar"
    assert backup(data_dir, archive) == ["omnicore.db"]
    assert tarfile.is_tarfile(archive)
    assert restore(archive, tmp_path / "fresh") == ["omnicore.db"]
    assert _kv_rows(tmp_path / "fresh") == 1
    with pytest.raises(ConfigError, match="nothing to back up"):
        backup(tmp_path / "empty", tmp_path / "c.tar")
