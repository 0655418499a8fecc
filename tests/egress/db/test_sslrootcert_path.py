"""A relative ``sslrootcert`` in ``omnicore.yaml`` is read from the app folder (the one rule
for relative paths in the config, docs/guides/configuration.md), whatever folder the host
starts in; in a URL from a secret it must still be absolute (no file to be relative to)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicore.config.loader import load_config
from omnicore.egress.db import db_connector, db_connectors_from
from omnicore.egress.db.config import target_of
from omnicore.egress.db.service import _make
from omnicore.errors import ConfigError
from tests.dbservers import CertAuthority
from tests.egress.db.test_tls import _PG_SSL, PG_PASSWORD, ca, pg_tls  # noqa: F401
from tests.pgcluster import Cluster


def _app(folder: Path, url: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "omnicore.yaml").write_text(
        "connectors:\n  pg:\n    kind: postgres\n"
        f"    url: \"{url}\"\n    secret: pg-pw\n")
    return folder / "omnicore.yaml"


@pytest.fixture
def elsewhere(tmp_path: Path) -> Iterator[Path]:
    """The working directory: a folder that is not the app's."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    old = os.getcwd()
    os.chdir(other)
    try:
        yield other
    finally:
        os.chdir(old)


def test_a_relative_sslrootcert_is_read_from_the_app_folder(
        tmp_path: Path, elsewhere: Path) -> None:
    app = tmp_path / "app"
    (app / "certs").mkdir(parents=True)
    (app / "certs" / "ca.pem").write_text("not checked at load\n")
    cfg = load_config(_app(app, "postgresql://u@db.example/d?sslmode=verify-full"
                                "&sslrootcert=certs/ca.pem"), environ={})
    url = cfg.connectors["pg"].url
    assert url is not None
    target = target_of("postgres", url, "url", allow_password=False)
    assert target.sslrootcert == str(app / "certs" / "ca.pem")
    # The connectors are built from the same config (what the host does at start).
    assert db_connectors_from(cfg.connectors)["pg"].url == url


def test_a_relative_sslrootcert_that_is_not_there_is_refused_by_its_absolute_path(
        tmp_path: Path, elsewhere: Path) -> None:
    app = tmp_path / "app"
    (elsewhere / "ca.pem").write_text("the working directory's, never read\n")
    cfg = load_config(_app(app, "postgresql://u@db.example/d?sslmode=verify-ca"
                                "&sslrootcert=ca.pem"), environ={})
    with pytest.raises(ConfigError) as info:
        db_connectors_from(cfg.connectors)
    assert f"sslrootcert {app / 'ca.pem'} is not a file" in str(info.value)


def test_other_parameters_and_absolute_paths_are_left_as_written(tmp_path: Path) -> None:
    ca_file = tmp_path / "ca.pem"
    ca_file.write_text("x\n")
    url = f"postgresql://u@db.example/d?sslmode=verify-full&sslrootcert={ca_file}"
    cfg = load_config(_app(tmp_path / "app", url), environ={})
    assert cfg.connectors["pg"].url == url


def test_a_url_from_a_secret_still_needs_an_absolute_sslrootcert() -> None:
    with pytest.raises(ConfigError) as info:
        target_of("postgres", "postgresql://u:p@db.example/d?sslmode=verify-full"
                              "&sslrootcert=ca.pem", "url", allow_password=True)
    assert "sslrootcert must be an absolute path here" in str(info.value)
    assert "app folder" in str(info.value)


def test_a_relative_sslrootcert_verifies_a_real_server(
        tmp_path: Path, elsewhere: Path, ca: CertAuthority,  # noqa: F811
        pg_tls: Cluster) -> None:  # noqa: F811
    app = tmp_path / "app"
    (app / "tls").mkdir(parents=True)
    shutil.copy(ca.ca, app / "tls" / "ca.pem")
    cfg = load_config(_app(app, f"postgresql://scram@localhost:{pg_tls.port}/tls"
                                "?sslmode=verify-full&sslrootcert=tls/ca.pem"), environ={})
    url = cfg.connectors["pg"].url
    backend = _make(db_connector("pg", {"kind": "postgres", "url": url, "secret": "pw",
                                        "pool_size": 1}), lambda name: PG_PASSWORD.encode())
    try:
        out = backend.run("p", True, _PG_SSL, [], time.monotonic() + 10)
    finally:
        backend.close()
    assert json.loads(out)["rows"] == [[True]]
