"""Signatures kept with catalog versions and checked everywhere (issue 44, items 4 and 5):
a publish from a registry records its reference, the signatures travel with the version, the
publisher's ``plugins.trust`` refuses an unsigned, tampered or unknown-key module, and every
host checks the version again against its own policy before it loads it: one that refuses
keeps the old version serving and reports why. Real registry (tests/registryserver.py), real
SQLite."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from omnicore.app import OmniApp
from omnicore.cli import main
from omnicore.oci import BlobSignature, SignatureRefused, generate_key, load_private_key
from omnicore.oci.signing import sign_blob
from omnicore.oci.trust import TrustPolicy
from omnicore.plugins.catalog import Catalog, digest_of
from omnicore.storage import SQLiteStorage
from tests.host_fixtures import echo_wasm
from tests.plugins.catalog_fixtures import publisher as open_catalog
from tests.plugins.catalog_fixtures import serves
from tests.registryserver import Registry
from tests.waiting import eventually


@pytest.fixture(scope="module")
def registry() -> Iterator[Registry]:
    server = Registry.start()
    try:
        yield server
    finally:
        server.stop()


def keypair(folder: Path, name: str) -> tuple[Any, Path]:
    private, public = generate_key()
    (folder / f"{name}.key").write_bytes(private)
    (folder / f"{name}.pub").write_bytes(public)
    return load_private_key(private), folder / f"{name}.pub"


def blob_sig(key: Any, data: bytes) -> BlobSignature:
    return BlobSignature(base64.b64decode(sign_blob(key, data)))


@pytest.fixture
def appdir(tmp_path: Path, module_cache: Path) -> Path:
    app = tmp_path / "app"
    (app / "plugins").mkdir(parents=True)
    keypair(tmp_path, "ops")
    keypair(tmp_path, "stranger")
    (app / "omnicore.yaml").write_text(
        "name: signed\ndata_dir: data\nplugins_dir: plugins\n"
        f"sandbox: {{cache_dir: {module_cache}}}\n"
        "plugins:\n  trust:\n    keys: [../ops.pub]\n    require: true\n")
    return app


def run(appdir: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["plugins", *args, "--app", str(appdir)],
                                catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def stored(appdir: Path, name: str) -> list[Any]:
    store = SQLiteStorage(appdir / "data" / "omnicore.db")
    try:
        return store.catalog.versions(name)
    finally:
        store.close()


def test_publish_from_a_registry_keeps_its_reference_and_signatures(
        registry: Registry, appdir: Path, tmp_path: Path) -> None:
    wasm = echo_wasm("greeter", "1.0.0")
    (tmp_path / "greeter.wasm").write_bytes(wasm)
    ref = registry.ref("catalog/greeter:1")
    push = CliRunner().invoke(main, ["plugins", "push", str(tmp_path / "greeter.wasm"), ref])
    assert push.exit_code == 0, push.output
    # Unsigned, under plugins.trust.require: refused at the pull, one line naming the digest.
    code, _, err = run(appdir, "publish", ref)
    line = err.strip().splitlines()[-1]
    assert code == 1 and digest_of(wasm) in line and "it is not signed" in line
    # Signed by the ops key: published, the reference by digest recorded, signatures kept.
    sign = CliRunner().invoke(main, ["plugins", "sign", ref, "--key",
                                     str(tmp_path / "ops.key")])
    assert sign.exit_code == 0, sign.output
    code, out, err = run(appdir, "publish", ref)
    assert code == 0, err
    assert out.startswith("published greeter v1 (sha256:") and "signed by sha256:" in out
    code, out, _ = run(appdir, "versions", "greeter", "--json")
    version = json.loads(out)["version"]
    assert version["digest"] == digest_of(wasm) and version["signatures"] == 1
    assert version["source"].startswith(f"{ref}@sha256:")  # pinned: the tag may move
    kept = stored(appdir, "greeter")[0]
    assert kept.signatures[0]["kind"] == "cosign" and kept.source == version["source"]


def test_a_file_publish_checks_file_sig_beside_it(appdir: Path, tmp_path: Path) -> None:
    ops = load_private_key((tmp_path / "ops.key").read_bytes())
    stranger = load_private_key((tmp_path / "stranger.key").read_bytes())
    wasm = echo_wasm("conf", "1.0.0")
    file = tmp_path / "conf.wasm"
    file.write_bytes(wasm)
    # Unsigned: refused, nothing stored.
    code, _, err = run(appdir, "publish", str(file))
    assert code == 1 and digest_of(wasm) in err and "it is not signed" in err, err
    # Signed by a key the policy does not hold: refused, naming that key.
    sig = file.with_name("conf.wasm.sig")
    sig.write_bytes(sign_blob(stranger, wasm))
    code, _, err = run(appdir, "publish", str(file))
    assert code == 1 and digest_of(wasm) in err, err
    assert "does not verify with a trusted key" in err or "not trusted" in err, err
    # Tampered: the ops key's signature of other bytes.
    sig.write_bytes(sign_blob(ops, echo_wasm("conf", "2.0.0")))
    code, _, err = run(appdir, "publish", str(file))
    assert code == 1 and digest_of(wasm) in err, err
    assert stored(appdir, "conf") == []
    # Signed by ops: published, the signature kept.
    sig.write_bytes(sign_blob(ops, wasm))
    code, _, err = run(appdir, "publish", str(file))
    assert code == 0, err
    kept = stored(appdir, "conf")[0]
    assert kept.signatures[0]["kind"] == "cosign-blob" and kept.source is None


# ---- every host checks at load, against its own policy ---------------------------------
# Three hosts in this process on one PostgreSQL database, each with a data dir of its own.

@pytest.fixture
def hosts(start_host: Callable[..., OmniApp], pg_url: str) -> Callable[..., OmniApp]:
    """A host on the test's PostgreSQL database under the trust policy ``trust``."""
    return lambda trust: start_host("signed-test", url=pg_url, plugins={"trust": trust})


def publisher(tmp_path: Path, url: str | None = None) -> AbstractContextManager[Catalog]:
    """The catalog as ``omnicore plugins`` opens it: of the PostgreSQL database ``url``, or
    of the app's SQLite file under ``tmp_path``."""
    return open_catalog(url or tmp_path / "data" / "omnicore.db")


def report(app: OmniApp) -> dict[str, Any]:
    """What ``app`` reports of greeter on its instance row."""
    follower = app.plugins.published.follower
    assert follower is not None
    return dict(follower.status().get("greeter", {}))


def test_each_host_checks_signatures_at_load_with_its_own_policy(
        hosts: Any, tmp_path: Path, pg_url: str) -> None:
    ops, ops_pub = keypair(tmp_path, "ops")
    other, other_pub = keypair(tmp_path, "other")
    a = hosts({"keys": [str(ops_pub)], "require": True})
    b = hosts({"keys": [str(other_pub)], "require": True})
    open_ = hosts({})  # no policy: loads whatever the catalog names
    with publisher(tmp_path, pg_url) as catalog:
        one = echo_wasm("greeter", "1.0.0")
        catalog.publish(one, signatures=[blob_sig(ops, one), blob_sig(other, one)])
        eventually(lambda: all(serves(h, "greeter", "1.0.0") for h in (a, b, open_)))
        # Version 2 is signed by the ops key only: host b's policy refuses it.
        two = echo_wasm("greeter", "2.0.0")
        v2, _ = catalog.publish(two, signatures=[blob_sig(ops, two)])
        eventually(lambda: serves(a, "greeter", "2.0.0") and serves(open_, "greeter", "2.0.0"))
        eventually(lambda: "error" in report(b))
        status = report(b)
        assert status["wanted"] == v2.digest and status["digest"] != v2.digest
        assert v2.digest in status["error"] and "other.pub" in status["error"]
        assert serves(b, "greeter", "1.0.0")  # the old version keeps serving there
        # A version whose stored signature was tampered with: refused by both policies.
        three = echo_wasm("greeter", "3.0.0")
        v3, _ = catalog.publish(three, signatures=[blob_sig(ops, two)])
        wanted = v3.digest
        eventually(lambda: "error" in report(a) and report(a)["wanted"] == wanted)
        assert "does not verify" in report(a)["error"]
        assert serves(a, "greeter", "2.0.0") and serves(b, "greeter", "1.0.0")
        eventually(lambda: serves(open_, "greeter", "3.0.0"))
        # Rolling back to version 1 (signed by both): every host serves it again.
        catalog.rollback("greeter", "v1")
        eventually(lambda: all(serves(h, "greeter", "1.0.0") for h in (a, b, open_)))


def test_the_publishers_policy_refuses_before_anything_is_stored(tmp_path: Path) -> None:
    ops, ops_pub = keypair(tmp_path, "ops")
    stranger, _ = keypair(tmp_path, "stranger")
    (tmp_path / "data").mkdir()
    with publisher(tmp_path) as catalog:
        catalog.policy = TrustPolicy.from_keys([ops_pub], require=True)
        wasm = echo_wasm("greeter", "1.0.0")
        for sigs in ([], [blob_sig(stranger, wasm)], [blob_sig(ops, b"other bytes")]):
            with pytest.raises(SignatureRefused) as refused:
                catalog.publish(wasm, signatures=sigs)
            assert digest_of(wasm) in str(refused.value) and "\n" not in str(refused.value)
        assert catalog.entries() == []
        version, made = catalog.publish(wasm, signatures=[blob_sig(ops, wasm)])
        assert made and len(version.signatures) == 1
        # The same module with another signature set is a new version (its checks differ).
        again, made = catalog.publish(wasm, signatures=[blob_sig(ops, wasm)])
        assert made is (again.signatures != version.signatures)
