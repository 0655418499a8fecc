"""A reloaded ``plugins.trust`` re-checks the catalog versions a host serves (issue 44, item
5): a version the new policy no longer trusts is refused with one line naming its digest and
the key, and the newest earlier version it trusts serves instead; trusting the key again
brings the version back; with no trusted version left the folder's file beneath serves; a
policy whose key cannot be read changes nothing. A real host following its omnicore.yaml
(app_reload.ConfigReload) on SQLite, real cosign-format signatures."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.app import OmniApp
from omnicore.app_reload import ConfigReload
from omnicore.config import load_config
from omnicore.config.schema import CatalogConfig
from omnicore.oci import BlobSignature, generate_key, load_private_key
from omnicore.oci.signing import sign_blob
from omnicore.plugins.catalog import Catalog
from omnicore.plugins.host import PluginHost
from omnicore.storage import SQLiteStorage
from tests.host_fixtures import echo_wasm, write
from tests.plugins.catalog_fixtures import serves
from tests.waiting import eventually


def keypair(folder: Path, name: str) -> tuple[Any, Path]:
    private, public = generate_key()
    (folder / f"{name}.pub").write_bytes(public)
    return load_private_key(private), folder / f"{name}.pub"


def signed(key: Any, data: bytes) -> BlobSignature:
    return BlobSignature(base64.b64decode(sign_blob(key, data)))


class Running:
    """A host following its omnicore.yaml, and its catalog as the CLI opens it."""

    def __init__(self, root: Path, module_cache: Path, trust: dict[str, Any]) -> None:
        self.path = root / "omnicore.yaml"
        self.doc: dict[str, Any] = {
            "name": "trust-reload", "data_dir": "data", "plugins_dir": "plugins",
            "sandbox": {"cache_dir": str(module_cache)}, "catalog": {"poll_s": 0.05},
            "plugins": {"trust": trust}}
        (root / "plugins").mkdir()
        self.path.write_text(json.dumps(self.doc))
        self.app = OmniApp(config=load_config(self.path), entry_points=False)
        self.reloader = ConfigReload(self.path)
        self.app.add_module(self.reloader)
        self.app.start()
        self.store = SQLiteStorage(root / "data" / "omnicore.db")
        self.checker = PluginHost()
        self.catalog = Catalog(lambda: self.store.catalog,
                               check=self.checker.published.check_module,
                               max_bytes=CatalogConfig().max_module_bytes, keep=20)

    def trust(self, trust: dict[str, Any]) -> None:
        seen = self.reloader.reloads
        self.doc["plugins"] = {"trust": trust}
        self.path.write_text(json.dumps(self.doc, indent=1))
        eventually(lambda: self.reloader.reloads > seen, "the reload")

    def report(self, name: str) -> dict[str, Any]:
        follower = self.app.plugins.published.follower
        assert follower is not None
        return dict(follower.status().get(name, {}))

    def close(self) -> None:
        self.app.stop()
        self.checker.close()
        self.store.close()


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Any, Path]]:
    return {n: keypair(tmp_path, n) for n in ("ops", "vendor")}


@pytest.fixture
def running(tmp_path: Path, module_cache: Path,
            keys: dict[str, Any]) -> Iterator[Running]:
    root = tmp_path / "app"
    root.mkdir()
    r = Running(root, module_cache, {"keys": [str(keys["ops"][1]), str(keys["vendor"][1])],
                                     "require": True})
    try:
        yield r
    finally:
        r.close()


def test_a_version_no_longer_trusted_is_refused_and_the_previous_trusted_serves(
        running: Running, keys: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    ops, vendor = keys["ops"][0], keys["vendor"][0]
    one, two = echo_wasm("tool", "1.0.0"), echo_wasm("tool", "2.0.0")
    running.catalog.publish(one, signatures=[signed(ops, one)])
    v2, _ = running.catalog.publish(two, signatures=[signed(vendor, two)])
    app = running.app
    eventually(lambda: serves(app, "tool", "2.0.0"), "version 2 served")
    # The vendor's key is no longer trusted: version 2 (signed by it only) stops serving.
    caplog.set_level(logging.WARNING, logger="omnicore.plugins.catalog")
    running.trust({"keys": [str(keys["ops"][1])], "require": True})
    eventually(lambda: serves(app, "tool", "1.0.0"), "version 1 served instead")
    eventually(lambda: "error" in running.report("tool"), "the refusal reported")
    assert running.reloader.last is not None
    assert "re-checked" in running.reloader.last.applied["trust"]
    report = running.report("tool")
    assert report["wanted"] == v2.digest and report["digest"] != v2.digest
    assert v2.digest in report["error"] and "ops.pub" in report["error"]
    assert "serving version 1" in report["error"]
    lines = [r.getMessage() for r in caplog.records if "no longer trusted" in r.getMessage()]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert v2.digest in lines[0] and "ops.pub" in lines[0]
    # Retried later under the same policy, it stays refused: version 1 keeps serving.
    follower = app.plugins.published.follower
    assert follower is not None
    follower.retry("tool")
    eventually(lambda: "error" in running.report("tool"), "the retry's report")
    assert serves(app, "tool", "1.0.0")
    # The vendor trusted again: version 2 serves at once (not after the retry's pause).
    running.trust({"keys": [str(keys["ops"][1]), str(keys["vendor"][1])], "require": True})
    eventually(lambda: serves(app, "tool", "2.0.0"), "version 2 again", timeout=5)
    # The report is the follower's, written just after the swap.
    eventually(lambda: "error" not in running.report("tool"), "the refusal cleared", timeout=5)


def test_with_no_trusted_version_left_the_folders_file_serves(
        running: Running, keys: dict[str, Any], tmp_path: Path) -> None:
    vendor = keys["vendor"][0]
    write(tmp_path / "app" / "plugins", "tool.wasm", echo_wasm("tool", "folder"))
    app = running.app
    eventually(lambda: serves(app, "tool", "folder"), "the folder's file")
    one = echo_wasm("tool", "1.0.0")
    v1, _ = running.catalog.publish(one, signatures=[signed(vendor, one)])
    eventually(lambda: serves(app, "tool", "1.0.0"), "the catalog's version")
    running.trust({"keys": [str(keys["ops"][1])], "require": True})
    eventually(lambda: serves(app, "tool", "folder"), "the folder's file again")
    eventually(lambda: "error" in running.report("tool"), "the refusal reported")
    report = running.report("tool")
    assert report["origin"] == "file" and report["wanted"] == v1.digest
    assert v1.digest in report["error"] and "no earlier version is trusted" in report["error"]


def test_a_policy_whose_key_cannot_be_read_changes_nothing(
        running: Running, keys: dict[str, Any], tmp_path: Path) -> None:
    vendor = keys["vendor"][0]
    one = echo_wasm("tool", "1.0.0")
    running.catalog.publish(one, signatures=[signed(vendor, one)])
    app = running.app
    eventually(lambda: serves(app, "tool", "1.0.0"), "version 1")
    seen = running.reloader.reloads
    running.doc["plugins"] = {"trust": {"keys": [str(tmp_path / "missing.pub")],
                                        "require": True}}
    running.path.write_text(json.dumps(running.doc, indent=2))
    # Not applied (the loader or the section's check refuses the key): nothing re-checked.
    eventually(lambda: running.reloader.reloads > seen
               or running.reloader._seen == running.reloader._stamp(), "the reload's read")
    assert running.reloader.last is None or "trust" not in running.reloader.last.applied
    follower = app.plugins.published.follower
    assert follower is not None
    follower.catch_up()
    assert serves(app, "tool", "1.0.0") and "error" not in running.report("tool")
