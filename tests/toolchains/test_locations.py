"""Where omnicore keeps what it caches outside a checkout: one rule, the user's cache folder
as Go's ``os.UserCacheDir`` finds it, for the build caches, the CLI's compiled modules and
Go's build cache alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnicore.cli.plugins import user_modules_dir as modules_dir
from omnicore.toolchains import locations


def test_the_users_cache_is_xdg_then_home_then_none(monkeypatch: pytest.MonkeyPatch,
                                                     tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert locations.user_cache_home() == tmp_path / "xdg"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # set but empty counts as unset, as in Go
    assert locations.user_cache_home() == tmp_path / "home" / ".cache"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert locations.user_cache_home() == tmp_path / "home" / ".cache"
    monkeypatch.delenv("HOME")
    assert locations.user_cache_home() is None


def test_the_cli_modules_and_the_wheels_build_cache_live_in_it(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OMNICORE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert locations.user_cache_dir() == tmp_path / "xdg" / "omnicore"
    assert modules_dir() == tmp_path / "xdg" / "omnicore" / "modules"
    monkeypatch.setenv("OMNICORE_CACHE_DIR", str(tmp_path / "mine"))
    assert modules_dir() == tmp_path / "mine"  # the operator's choice wins
    # An installed wheel (no checkout) builds into the user's cache, not beside the package.
    monkeypatch.setattr(locations, "checkout", lambda: None)
    assert locations.cache_dir() == tmp_path / "xdg" / "omnicore"
