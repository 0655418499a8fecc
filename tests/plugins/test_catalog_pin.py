"""Pinning a catalog name to one of its versions (issue 44, item 2): every host of the store
serves the pinned version whatever is published later, until it is unpinned; a rollback or a
removal is refused meanwhile; a digest the name has no version of is refused naming it. Two
hosts in this process on one PostgreSQL database (each with a data dir of its own), the CLI on
an app's SQLite store, the REST routes on a real console."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from omnicore.app import OmniApp
from omnicore.cli import main
from omnicore.config.schema import CatalogConfig
from omnicore.errors import PluginError, PluginNotFound
from omnicore.plugins.catalog import BadPublish, Catalog, VersionPinned
from omnicore.storage.catalog_rows import Pinned
from omnicore.storage.postgres import PostgresStorage
from tests.host_fixtures import echo_wasm
from tests.plugins.catalog_fixtures import publisher as open_catalog
from tests.plugins.catalog_fixtures import serves
from tests.waiting import eventually


@pytest.fixture
def hosts(start_host: Callable[..., OmniApp], pg_url: str) -> Callable[[], OmniApp]:
    """Hosts on one PostgreSQL database (start_host)."""
    return lambda: start_host("pin-test", url=pg_url)


def publisher(url: str) -> AbstractContextManager[Catalog]:
    """The store's catalog as ``omnicore plugins`` opens it, keeping two versions a name."""
    return open_catalog(url, CatalogConfig(keep_versions=2))


def test_every_host_serves_the_pinned_version_whatever_is_published_until_unpinned(
        hosts: Any, pg_url: str) -> None:
    a, b = hosts(), hosts()
    with publisher(pg_url) as catalog:
        v1, _ = catalog.publish(echo_wasm("pinned", "1.0.0"), by="ops")
        _v2, _ = catalog.publish(echo_wasm("pinned", "2.0.0"), by="ops")
        eventually(lambda: serves(a, "pinned", "2.0.0") and serves(b, "pinned", "2.0.0"))
        entry = catalog.pin("pinned", v1.digest[:13], by="ada")  # a prefix of its digest
        assert entry.pinned and entry.pinned_by == "ada" and entry.version == v1
        eventually(lambda: serves(a, "pinned", "1.0.0") and serves(b, "pinned", "1.0.0"))
        # Published later (twice, over keep_versions=2): added, kept, never in force.
        v3, made = catalog.publish(echo_wasm("pinned", "3.0.0"), by="ops")
        assert made and v3.number == 3
        again, made = catalog.publish(echo_wasm("pinned", "3.0.0"), by="ops")
        assert not made and again.id == v3.id  # the newest again: nothing new
        v4, _ = catalog.publish(echo_wasm("pinned", "4.0.0"), by="ops")
        kept = catalog.versions("pinned")
        assert [v.number for v in kept] == [4, 1]  # the pinned one is never pruned
        held = catalog.entry("pinned")
        assert held.pinned and held.version == v1
        # A change published after them reaches both hosts: they read past the publishes
        # and still serve the pinned version.
        catalog.publish(echo_wasm("marker", "1.0.0"))
        eventually(lambda: serves(a, "marker", "1.0.0") and serves(b, "marker", "1.0.0"))
        assert serves(a, "pinned", "1.0.0") and serves(b, "pinned", "1.0.0")
        # A host started now (down during all of it) comes up on the pinned version too.
        c = hosts()
        assert serves(c, "pinned", "1.0.0")
        # What would move it is refused, naming the pin and what to do.
        with pytest.raises(VersionPinned, match=r"pinned to v1 \(sha256:[0-9a-f]{64}\) by "
                                                r"ada: cannot roll it back; unpin it first"):
            catalog.rollback("pinned")
        with pytest.raises(VersionPinned, match="cannot remove it"):
            catalog.remove("pinned")
        assert catalog.entry("pinned").version == v1
        store = PostgresStorage(pg_url)  # the store refuses it too, in the change's own
        try:                             # transaction (a rollback racing the pin)
            with pytest.raises(Pinned):
                store.catalog.point("pinned", v4.id, by="x", at=time.time())
            with pytest.raises(Pinned):
                store.catalog.remove("pinned", by="x", at=time.time())
        finally:
            store.close()
        # Pinning another version moves the pin (an explicit choice, not a rollback).
        catalog.pin("pinned", "v4", by="ada")
        eventually(lambda: all(serves(h, "pinned", "4.0.0") for h in (a, b, c)))
        catalog.pin("pinned", v1.digest, by="ada")
        eventually(lambda: all(serves(h, "pinned", "1.0.0") for h in (a, b, c)))
        # Unpinned: the newest version goes in force everywhere.
        out = catalog.unpin("pinned", by="ada")
        assert not out.pinned and out.version == v4
        eventually(lambda: all(serves(h, "pinned", "4.0.0") for h in (a, b, c)))
        catalog.rollback("pinned", "v1")  # allowed again
        eventually(lambda: all(serves(h, "pinned", "1.0.0") for h in (a, b, c)))


def test_a_digest_the_name_has_no_version_of_is_refused_naming_it(hosts: Any,
                                                                   pg_url: str) -> None:
    hosts()
    with publisher(pg_url) as catalog:
        mine, _ = catalog.publish(echo_wasm("mine", "1.0.0"))
        theirs, _ = catalog.publish(echo_wasm("theirs", "1.0.0"))
        unknown = "sha256:" + "ab" * 32
        with pytest.raises(PluginNotFound, match=f"cannot pin 'mine' to {unknown}: 'mine' has "
                                                 "no such version \\(no plugin in the catalog"):
            catalog.pin("mine", unknown)
        with pytest.raises(PluginNotFound, match=f"to {theirs.digest}: .* it is a version of "
                                                 "'theirs', not of 'mine'"):
            catalog.pin("mine", theirs.digest)
        with pytest.raises(PluginNotFound, match="it is a version of 'theirs'"):
            catalog.pin("mine", theirs.digest[:14])  # a prefix of theirs
        with pytest.raises(BadPublish, match=r"'not-a-digest'.* not a digest"):
            catalog.pin("mine", "not-a-digest")
        with pytest.raises(BadPublish, match="not a digest"):
            catalog.pin("mine", "sha256:12%")  # no pattern reaches the store
        with pytest.raises(BadPublish, match="not a digest"):
            catalog.pin("mine", "abc")  # too short to name one
        with pytest.raises(PluginNotFound, match="no version 'v9'"):
            catalog.pin("mine", "v9")
        with pytest.raises(PluginNotFound, match="no plugin 'nobody' in the catalog"):
            catalog.pin("nobody", mine.digest)
        with pytest.raises(PluginError, match="'mine' is not pinned"):
            catalog.unpin("mine")
        assert not catalog.entry("mine").pinned  # nothing refused changed anything


# ---- the CLI on an app's own store -------------------------------------------------------

def cli(appdir: Path, *args: str) -> Any:
    return CliRunner().invoke(main, ["plugins", *args, "--app", str(appdir)])


def test_the_cli_pins_lists_the_pin_and_refuses_what_it_holds(tmp_path: Path,
                                                              module_cache: Path) -> None:
    appdir = tmp_path / "app"
    (appdir / "plugins").mkdir(parents=True)
    (appdir / "omnicore.yaml").write_text(
        f"name: pins\ndata_dir: data\nplugins_dir: plugins\n"
        f"sandbox: {{cache_dir: {module_cache}}}\n")
    for v in ("1.0.0", "2.0.0"):
        (tmp_path / "p.wasm").write_bytes(echo_wasm("tool", v))
        assert cli(appdir, "publish", str(tmp_path / "p.wasm")).exit_code == 0
    out = cli(appdir, "pin", "tool", "v1")
    assert out.exit_code == 0, out.output
    assert out.stdout.startswith("tool: pinned to v1 (sha256:")
    listed = cli(appdir, "versions", "tool").stdout.splitlines()
    assert listed[0].startswith("  v2") and listed[1].startswith("* v1")
    assert listed[1].endswith("pinned by cli")
    assert "pinned" in cli(appdir, "catalog").stdout
    (tmp_path / "p.wasm").write_bytes(echo_wasm("tool", "3.0.0"))
    published = cli(appdir, "publish", str(tmp_path / "p.wasm"))
    assert published.exit_code == 0 and "published tool v3" in published.stdout
    assert "is pinned to sha256:" in published.stderr and "unpin tool" in published.stderr
    refused = cli(appdir, "rollback", "tool")
    assert refused.exit_code != 0 and "is pinned to v1" in refused.output
    refused = cli(appdir, "pin", "tool", "sha256:" + "0" * 64)
    assert refused.exit_code != 0 and "sha256:" + "0" * 64 in refused.output
    out = cli(appdir, "unpin", "tool")
    assert out.exit_code == 0 and "v3" in out.stdout
    refused = cli(appdir, "unpin", "tool")
    assert refused.exit_code != 0 and "not pinned" in refused.output
