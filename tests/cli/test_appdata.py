"""Opening an app folder for the operator commands (cli/appdata.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnicore.cli.appdata import app_storage, config_path, load_app_config
from omnicore.errors import ConfigError


def test_a_folder_without_omnicore_yaml_says_what_to_pass(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no omnicore\.yaml in .*; pass --app APPDIR"):
        config_path(tmp_path)
    with pytest.raises(ConfigError, match="; pass --app DIR \\(the folder"):
        load_app_config(tmp_path, "pass --app DIR (the folder of the app)")


def test_app_storage_opens_the_data_dir_the_config_names(tmp_path: Path) -> None:
    (tmp_path / "omnicore.yaml").write_text("data_dir: ./state\n", encoding="utf-8")
    with app_storage(tmp_path) as storage:
        storage.kv("p").set("k", b"v")
    with app_storage(tmp_path) as storage:
        assert storage.kv("p").get("k") == b"v"
    assert (tmp_path / "state").is_dir()
