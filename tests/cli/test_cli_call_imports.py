"""A bare file's ``omnicore call`` with the user's own module cache (no
``OMNICORE_CACHE_DIR``: ``~/.cache/omnicore/modules``) imports none of the build tools
(``omnicore.toolchains``, a few percent of the call's imports: issue 63 item 5), and finds its
cache where the build tools' rule puts it."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnicore.cli.plugins import user_modules_dir
from omnicore.toolchains import locations
from tests.cli.test_cli_lazy import _loaded, _modules
from tests.host_fixtures import config_wasm, write


@pytest.mark.parametrize("xdg", [True, False])
def test_the_call_cache_is_where_the_build_tools_say(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch,
                                                     xdg: bool) -> None:
    monkeypatch.delenv("OMNICORE_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    if xdg:
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    else:
        monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert user_modules_dir() == locations.user_cache_dir() / "modules"
    assert user_modules_dir().is_relative_to(tmp_path / ("xdg" if xdg else "home"))


def test_a_bare_file_call_imports_no_build_tools(tmp_path: Path) -> None:
    path = write(tmp_path, "conf.wasm", config_wasm("conf"))
    home = tmp_path / "home"
    env = {"HOME": str(home), "XDG_CACHE_HOME": "", "OMNICORE_CACHE_DIR": ""}
    args = ["call", str(path), "get", "--input", "k", "--grant", "config", "--config", "k=1"]
    for _ in range(2):  # compiled into the user's cache, then read from it
        result, modules = _modules(args, env=env)
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"1\n"
        assert _loaded(modules, ("omnicore.toolchains",)) == []
    assert any((home / ".cache" / "omnicore" / "modules").iterdir())
