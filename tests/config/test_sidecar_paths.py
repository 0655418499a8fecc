"""A relative folder of an ``fs`` grant in a sidecar is read from the sidecar's own folder
(the plugins folder), as one in ``omnicore.yaml`` is read from that file's folder (the app
folder): a path is relative to the file that names it, never to the shell's folder
(docs/guides/configuration.md). Through a host that loads the plugin from its folder."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import wasmtime

from omnicore.app import OmniApp
from omnicore.plugins.sidecar import read_sidecar
from tests.wasi.test_exec import _WRITE_FILE


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The shell's folder, which is neither the app's nor the plugins folder."""
    shell = tmp_path / "shell"
    (shell / "data").mkdir(parents=True)  # the folder the old rule would have opened
    monkeypatch.chdir(shell)
    yield shell


def test_a_sidecar_fs_folder_is_read_from_the_plugins_folder(
        make_app: Callable[..., OmniApp], tmp_path: Path, elsewhere: Path) -> None:
    plugins = tmp_path / "host" / "plugins"
    (plugins / "data").mkdir(parents=True)
    (plugins / "writer.wasm").write_bytes(wasmtime.wat2wasm(_WRITE_FILE))
    (plugins / "writer.yaml").write_text(
        "grants:\n  fs: {dirs: [{path: data, guest: /data, write: true}]}\n")
    app = make_app("host", builtin_extensions=None, overrides={"sandbox": {"watch": False}})
    app.start()
    try:
        out = json.loads(app.plugins.call("writer", "@exec", b""))
    finally:
        app.stop(grace=1)
    assert out["exit_code"] == 0, out
    assert (plugins / "data" / "out.txt").read_text() == "hi"
    assert not (elsewhere / "data" / "out.txt").exists()


def test_absolute_and_home_paths_stay_as_written(tmp_path: Path, elsewhere: Path) -> None:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    (plugins / "p.wasm").write_bytes(b"\0asm\1\0\0\0")
    (plugins / "p.yaml").write_text(
        "grants:\n  fs:\n    dirs: [{path: a/b, guest: /ab}, {path: /srv/x, guest: /x},\n"
        "           {path: ~/y, guest: /y}]\n")
    dirs = read_sidecar(plugins / "p.wasm").grants["fs"]["dirs"]  # type: ignore[index]
    assert [d["path"] for d in dirs] == [str(plugins / "a/b"), "/srv/x", "~/y"]


def test_the_rule_is_written_beside_the_app_folder_rule() -> None:
    guide = (Path(__file__).resolve().parents[2] / "docs" / "guides" / "configuration.md"
             ).read_text()
    assert "relative path in a sidecar is read from the sidecar's folder" in guide
