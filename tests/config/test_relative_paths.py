"""One rule for a relative path in omnicore.yaml (issue 61, item 4): it is read from the app
folder (the folder of omnicore.yaml), whatever folder the host or the command started in:
the folders (data_dir, plugins_dir, sandbox.cache_dir, workflows.dir), the trust store's key
files, and the folders an ``fs`` grant opens. docs/guides/configuration.md says so."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnicore.config import load_config


def test_every_relative_path_is_read_from_the_app_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    app = tmp_path / "app"
    app.mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # the shell's folder is not the app's
    (app / "omnicore.yaml").write_text(
        "data_dir: state\nplugins_dir: wasm\nworkflows: {dir: flows}\n"
        "plugins:\n"
        "  trust: {keys: [keys/ops.pub]}\n"
        "  notes:\n"
        "    grants:\n"
        "      fs: {dirs: [{path: notes-data, guest: /data}, {path: /srv/x, guest: /x},\n"
        "                  {path: ~/y, guest: /y}]}\n")
    cfg = load_config(app / "omnicore.yaml", environ={})
    assert (cfg.data_dir, cfg.plugins_dir) == (app / "state", app / "wasm")
    assert cfg.workflows.dir == app / "flows"
    assert cfg.trust.keys == [str(app / "keys" / "ops.pub")]
    grants = cfg.plugins["notes"].grants
    assert isinstance(grants, dict)
    assert [d["path"] for d in grants["fs"]["dirs"]] == [str(app / "notes-data"), "/srv/x",
                                                         "~/y"]


def test_the_rule_is_written_where_operators_read_it() -> None:
    root = Path(__file__).resolve().parents[2]
    guide = (root / "docs" / "guides" / "configuration.md").read_text()
    assert "relative path in `omnicore.yaml` is read from the app folder" in guide
    assert "read from the app folder" in (root / "specs" / "host.md").read_text()
