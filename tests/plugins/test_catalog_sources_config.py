"""``catalog.sources``: OCI references a host publishes to the catalog at start and when a
config reload adds them (issue 44, item 6: plugins from an OCI reference in config, none baked
into the image). A real registry
started by the tests (tests/registryserver.py), a real host on SQLite: the reference is
pulled, published once (a restart and a second start publish nothing new, and do not undo a
rollback), served; a reference that cannot be pulled or is unsigned under plugins.trust is
one warning and the host starts; a value that is no OCI reference is a config error."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from omnicore.app import OmniApp
from omnicore.app_reload import ConfigReload
from omnicore.cli import main
from omnicore.config import load_config
from omnicore.errors import ConfigError
from tests.host_fixtures import echo_wasm
from tests.plugins.catalog_fixtures import catalog_of, serves
from tests.registryserver import Registry
from tests.waiting import eventually


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    server = Registry.start()
    try:
        yield server
    finally:
        server.stop()


def push(registry: Registry, tmp_path: Path, path: str, module: bytes) -> str:
    """Push ``module`` to ``path`` as ``NAME.wasm`` (the artifact names the plugin NAME: the
    repository's last part)."""
    folder = tmp_path / "pushed" / path.replace("/", "_")
    folder.mkdir(parents=True)
    wasm = folder / f"{path.split(':')[0].rsplit('/', 1)[-1]}.wasm"
    wasm.write_bytes(module)
    ref = registry.ref(path)
    pushed = CliRunner().invoke(main, ["plugins", "push", str(wasm), ref])
    assert pushed.exit_code == 0, pushed.output
    return ref


@pytest.fixture
def start(start_host: Callable[..., OmniApp]) -> Callable[..., OmniApp]:
    """A host on the test's SQLite folder with ``catalog`` settings (``sources=[...]``)."""
    return lambda **catalog: start_host("sources-test", catalog=catalog)


def test_a_source_in_config_is_published_once_and_served(
        registry: Registry, tmp_path: Path, start: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="omnicore.plugins.catalog")
    ref = push(registry, tmp_path, "sources/greeter:1", echo_wasm("greeter", "1.0.0"))
    app = start(sources=[ref])
    eventually(lambda: serves(app, "greeter", "1.0.0"), "the source served")
    (version,) = catalog_of(app).versions("greeter")
    assert version.published_by == "catalog.sources"
    assert version.source is not None and version.source.startswith(f"{ref}@sha256:")
    # A second version published by hand, then rolled back to the source's: a restart
    # publishes nothing and does not undo the rollback.
    catalog_of(app).publish(echo_wasm("greeter", "2.0.0"))
    eventually(lambda: serves(app, "greeter", "2.0.0"), "version 2")
    catalog_of(app).rollback("greeter", "v1")
    eventually(lambda: serves(app, "greeter", "1.0.0"), "back on the source's")
    app.stop()
    caplog.clear()
    again = start(sources=[ref])
    assert serves(again, "greeter", "1.0.0")
    # The source thread had its look: the module is kept, nothing is published.
    eventually(lambda: any("in the catalog already" in r.getMessage() for r in caplog.records),
               "the source thread's look")
    assert [v.number for v in catalog_of(again).versions("greeter")] == [2, 1]
    assert serves(again, "greeter", "1.0.0")


def test_a_source_added_by_a_config_reload_is_published_without_a_restart(
        registry: Registry, tmp_path: Path, module_cache: Path) -> None:
    first = push(registry, tmp_path, "live/first:1", echo_wasm("first", "1.0.0"))
    added = push(registry, tmp_path, "live/added:1", echo_wasm("added", "1.0.0"))
    (tmp_path / "plugins").mkdir()
    path = tmp_path / "omnicore.yaml"
    doc: dict[str, Any] = {"name": "sources-live", "data_dir": "data",
                           "plugins_dir": "plugins",
                           "sandbox": {"cache_dir": str(module_cache)},
                           "catalog": {"poll_s": 0.05, "sources": [first]}}
    path.write_text(json.dumps(doc))
    app = OmniApp(config=load_config(path))
    reloader = ConfigReload(path)
    app.add_module(reloader)
    app.start()
    try:
        eventually(lambda: serves(app, "first", "1.0.0"), "the source at start")
        doc["catalog"]["sources"] = [added]  # one added, one taken away
        path.write_text(json.dumps(doc))
        eventually(lambda: serves(app, "added", "1.0.0"), "the source the reload added")
        eventually(lambda: app.storage.audit.entries(action_prefix="config.reload"),
                   "the reload's audit entry")
        [entry] = app.storage.audit.entries(action_prefix="config.reload")
        assert entry.after["applied"]["catalog sources"] == f"catalog.sources: publishing {added}"
        assert entry.after["restart"] == []
        # The reference taken away stays in the catalog: every host may be serving it.
        assert sorted(e.name for e in catalog_of(app).entries()) == ["added", "first"]
        assert serves(app, "first", "1.0.0")
    finally:
        app.stop()


def test_a_source_that_cannot_be_pulled_is_one_warning_and_the_host_serves(
        registry: Registry, tmp_path: Path, start: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="omnicore.plugins.catalog")
    good = push(registry, tmp_path, "sources/ok:1", echo_wasm("ok", "1.0.0"))
    missing = registry.ref("sources/nothing-here:1")
    app = start(sources=[missing, good])
    eventually(lambda: serves(app, "ok", "1.0.0"), "the good source, after the bad one")
    lines = [r.getMessage() for r in caplog.records
             if r.getMessage().startswith("catalog.sources:")]
    assert len(lines) == 1 and missing in lines[0] and "not published" in lines[0]
    assert [e.name for e in catalog_of(app).entries()] == ["ok"]


def test_an_unsigned_source_under_require_is_refused(
        registry: Registry, tmp_path: Path, start: Any,
        caplog: pytest.LogCaptureFixture) -> None:
    from omnicore.oci import generate_key

    _private, public = generate_key()
    (tmp_path / "ops.pub").write_bytes(public)
    caplog.set_level(logging.WARNING, logger="omnicore.plugins.catalog")
    ref = push(registry, tmp_path, "sources/unsigned:1", echo_wasm("unsigned", "1.0.0"))
    (tmp_path / "plugins").mkdir(exist_ok=True)
    app = OmniApp("sources-test", overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(tmp_path / "plugins"),
        "catalog": {"poll_s": 0.05, "sources": [ref]},
        "plugins": {"trust": {"keys": [str(tmp_path / "ops.pub")], "require": True}}},
        environ={}, entry_points=False)
    app.start()
    try:
        eventually(lambda: any("not published" in r.getMessage() for r in caplog.records),
                   "the refusal")
        line = next(r.getMessage() for r in caplog.records if "not published" in r.getMessage())
        assert ref in line and "not signed" in line and "sha256:" in line
        assert catalog_of(app).entries() == []
    finally:
        app.stop()


def test_a_source_that_is_no_oci_reference_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"catalog.sources: 'plugins/x.wasm' is not an OCI"):
        OmniApp("sources-test", overrides={"data_dir": str(tmp_path / "data"),
                                           "catalog": {"sources": ["plugins/x.wasm"]}},
                environ={}, entry_points=False)
