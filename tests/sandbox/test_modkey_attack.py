"""The compiled-module key file attacked by another local user (specs/security.md, Compiled
code): a planted temporary file, a FIFO, a folder others may write."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from omnicore.errors import ConfigError
from omnicore.sandbox import modkey


def test_a_file_planted_under_the_temporary_name_never_receives_the_key(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o700)
    key_path = folder / modkey.KEY_FILE
    planted = key_path.with_name(f".{key_path.name}.{os.getpid()}.tmp")
    planted.write_text("")
    os.chmod(planted, 0o666)
    # The planter keeps a handle: whatever the host writes through the old inode, they read.
    with open(planted, encoding="ascii") as spy:
        key = modkey.from_file(key_path)
        assert spy.read() == ""
    assert key.encoded() in key_path.read_text()
    assert os.stat(key_path).st_mode & 0o777 == 0o600


def test_a_fifo_as_the_key_file_is_refused_at_once(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir(mode=0o700)
    key_path = folder / modkey.KEY_FILE
    os.mkfifo(key_path, 0o600)
    outcome: list[BaseException | modkey.ModuleKey] = []

    def read() -> None:
        try:
            outcome.append(modkey.from_file(key_path))
        except BaseException as exc:  # the outcome is the test's to judge
            outcome.append(exc)

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(30)  # a hang is the failure: the bound only keeps the run alive
    assert not worker.is_alive(), "reading a FIFO key file held the start"
    assert isinstance(outcome[0], ConfigError)
    assert "not a regular file" in str(outcome[0])


def test_a_key_is_not_made_in_a_folder_others_may_write(tmp_path: Path) -> None:
    folder = tmp_path / "shared"
    folder.mkdir()
    os.chmod(folder, 0o777)
    with pytest.raises(ConfigError, match="can be written by other users"):
        modkey.from_file(folder / modkey.KEY_FILE)
    assert not (folder / modkey.KEY_FILE).exists()


def test_a_sticky_shared_folder_still_gets_a_private_key(tmp_path: Path) -> None:
    # /tmp's mode: others may create files but not replace ours.
    folder = tmp_path / "sticky"
    folder.mkdir()
    os.chmod(folder, 0o1777)
    key = modkey.from_file(folder / modkey.KEY_FILE)
    assert modkey.from_file(folder / modkey.KEY_FILE) == key
