"""A ``sandbox.cache_dir`` that is the data dir, or holds it, is refused at load: the module
cache is the folder hosts share (a volume, a copied folder), and whoever reads it would read
the secret store's sealing key and the database in the data dir too. A cache inside the data
dir (the default, ``<data_dir>/cache``) is fine: reading it reads compiled modules only."""

from __future__ import annotations

from pathlib import Path

import pytest

from omnicore.config import load_config
from omnicore.errors import ConfigError


def _app(tmp_path: Path, body: str) -> Path:
    app = tmp_path / "app"
    app.mkdir()
    (app / "omnicore.yaml").write_text(body)
    return app / "omnicore.yaml"


@pytest.mark.parametrize(("data_dir", "cache_dir"), [
    ("state", "state"),                 # the same folder
    ("state", "state/"),                # the same, written differently
    ("shared/state", "shared"),         # the cache holds the data dir
    (".", "."),                         # both the app folder
])
def test_a_cache_dir_that_holds_the_data_dir_is_refused(
        tmp_path: Path, data_dir: str, cache_dir: str) -> None:
    path = _app(tmp_path, f"data_dir: {data_dir}\nsandbox: {{cache_dir: {cache_dir}}}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    message = str(caught.value)
    data, cache = (path.parent / data_dir).resolve(), (path.parent / cache_dir).resolve()
    assert str(data) in message and str(cache) in message  # both paths, as they will be read
    assert "secret store" in message
    assert "set sandbox.cache_dir to a folder that does not hold" in message
    assert caught.value.key == "sandbox.cache_dir"
    assert "omnicore.yaml" in (caught.value.source or "")


def test_the_same_from_the_environment_names_the_variable(tmp_path: Path) -> None:
    path = _app(tmp_path, "data_dir: /srv/omni/data\n")
    with pytest.raises(ConfigError, match="OMNICORE_SANDBOX__CACHE_DIR") as caught:
        load_config(path, environ={"OMNICORE_SANDBOX__CACHE_DIR": "/srv/omni"})
    assert "/srv/omni/data" in str(caught.value)


def test_a_symlink_to_the_data_dir_is_the_data_dir(tmp_path: Path) -> None:
    path = _app(tmp_path, "data_dir: state\nsandbox: {cache_dir: modules}\n")
    (path.parent / "state").mkdir()
    (path.parent / "modules").symlink_to(path.parent / "state")
    with pytest.raises(ConfigError, match="is the data dir"):
        load_config(path, environ={})


@pytest.mark.parametrize("cache_dir", [None, "state/cache", "modules", "../shared-modules"])
def test_a_cache_beside_or_inside_the_data_dir_is_fine(tmp_path: Path,
                                                       cache_dir: str | None) -> None:
    body = "data_dir: state\n" + (f"sandbox: {{cache_dir: {cache_dir}}}\n" if cache_dir else "")
    cfg = load_config(_app(tmp_path, body), environ={})
    assert cfg.sandbox.cache_dir is not None
    assert not cfg.data_dir.resolve().is_relative_to(cfg.sandbox.cache_dir.resolve())
