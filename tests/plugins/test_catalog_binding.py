"""What a sidecar signature binds, and what a host holds to at load (issue 61, second round).

- A sidecar file's signature signs a statement (``oci.signing.sidecar_statement``: an in-toto
  Statement v1 whose subject is the plugin name and the module's sha256, whose predicate is
  the sidecar file's sha256): signed for plugin A's module, it covers nothing for B's module
  or under B's name, at publish and at every host's load. The older form (the sidecar's bytes
  alone) binds neither and is refused under ``require``.
- ``catalog.refuse_older`` is held at load too: a host with it does not put in force a version
  that puts an older module in force by its publish (made through a host or CLI without the
  setting), keeps serving what it serves and says why; a rollback is an operator's choice.
- A sidecar override written straight into the catalog table is audited by the first host
  that applies it, once per version.

Real SQLite and PostgreSQL (tests/pgcluster.py), real hosts in process.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from omnicore.app import OmniApp
from omnicore.app_reload import ConfigReload
from omnicore.cli.main import main
from omnicore.config.loader import load_config
from omnicore.oci import BlobSignature, SignatureRefused, generate_key, load_private_key
from omnicore.oci.signing import (
    SidecarSignature,
    load_public_key,
    sidecar_signature_to_json,
    sidecar_statement,
    sign_blob,
    signature_to_json,
)
from omnicore.oci.trust import TrustPolicy, check_version
from omnicore.plugins.catalog import digest_of
from omnicore.plugins.convergence import CatalogFollower
from tests.host_fixtures import echo_wasm
from tests.plugins.catalog_fixtures import publisher, serves
from tests.waiting import eventually

PERMISSIVE = b"limits: {timeout_ms: 999999}\nconfig: {mode: admin}\nmcp: {expose: ['*']}\n"
PERMISSIVE_DOC = {"limits": {"timeout_ms": 999999}, "config": {"mode": "admin"},
                  "mcp": {"expose": ["*"]}}


@pytest.fixture
def ops(tmp_path: Path) -> tuple[Any, Path]:
    private, public = generate_key()
    (tmp_path / "ops.key").write_bytes(private)
    (tmp_path / "ops.pub").write_bytes(public)
    return load_private_key(private), tmp_path / "ops.pub"


def blob(key: Any, module: bytes) -> BlobSignature:
    return BlobSignature(base64.b64decode(sign_blob(key, module)))


def statement_sig(key: Any, module: bytes, name: str, text: bytes) -> SidecarSignature:
    return SidecarSignature(text, base64.b64decode(
        sign_blob(key, sidecar_statement(digest_of(module), name, text))))


def test_a_sidecar_signed_for_plugin_a_is_refused_with_b_s_module_or_name(
        ops: tuple[Any, Path], tmp_path: Path) -> None:
    key, pub = ops
    a, b = echo_wasm("a", "1.0.0"), echo_wasm("b", "1.0.0")
    for_a = statement_sig(key, a, "a", PERMISSIVE)
    with publisher(tmp_path / "omnicore.db") as catalog:
        catalog.policy = TrustPolicy.from_keys([pub], require=True)
        # B's module (a trusted key signed it), A's sidecar signature replayed: refused.
        with pytest.raises(SignatureRefused, match="for this module and plugin name"):
            catalog.publish(b, name="b", sidecar=PERMISSIVE_DOC, signatures=[blob(key, b)],
                            sidecar_signatures=[for_a])
        # A's own module under another name: refused too (the name is bound).
        with pytest.raises(SignatureRefused, match="for this module and plugin name"):
            catalog.publish(a, name="b", sidecar=PERMISSIVE_DOC, signatures=[blob(key, a)],
                            sidecar_signatures=[for_a])
        assert catalog._rows().versions("b") == []
        done = catalog.publication(a, name="a", sidecar=PERMISSIVE_DOC,
                                   signatures=[blob(key, a)], sidecar_signatures=[for_a])
        assert done.made and done.sidecar.startswith("its file signed by ops.pub")
    # The host's check (what a table writer's copy of the row meets): the same.
    policy = TrustPolicy.from_keys([pub], require=True)
    stored = [signature_to_json(blob(key, b)), sidecar_signature_to_json(for_a)]
    with pytest.raises(SignatureRefused):
        check_version(digest_of(b), PERMISSIVE_DOC, stored, policy, plugin="b")


def test_an_old_form_sidecar_signature_is_refused_under_require_and_said_without(
        ops: tuple[Any, Path]) -> None:
    # Decision: the older form (the sidecar's bytes alone) is refused under `require`: it
    # binds no module and no name, so accepting it is accepting the replay above. Without
    # `require` nothing is refused and the cover says why it does not count.
    key, pub = ops
    a = echo_wasm("a", "1.0.0")
    old = SidecarSignature(PERMISSIVE, base64.b64decode(sign_blob(key, PERMISSIVE)))
    stored = [signature_to_json(blob(key, a)), sidecar_signature_to_json(old)]
    with pytest.raises(SignatureRefused, match="the older form, over the file alone"):
        check_version(digest_of(a), PERMISSIVE_DOC, stored,
                      TrustPolicy.from_keys([pub], require=True), plugin="a")
    _, cover = check_version(digest_of(a), PERMISSIVE_DOC, stored,
                             TrustPolicy.from_keys([pub]), plugin="a")
    assert cover.startswith("unsigned (its file's signature by ops.pub")
    assert "does not bind this module and plugin name" in cover


def test_plugins_sign_binds_the_sidecar_to_its_module_and_name(
        ops: tuple[Any, Path], tmp_path: Path) -> None:
    key, pub = ops
    wasm = echo_wasm("greet", "1.0.0")
    module = tmp_path / "greet.wasm"
    module.write_bytes(wasm)
    side = tmp_path / "greet.yaml"
    side.write_bytes(PERMISSIVE)
    runner = CliRunner()
    bare = runner.invoke(main, ["plugins", "sign", str(side), "--key", str(tmp_path / "ops.key")])
    assert bare.exit_code != 0 and "--module" in bare.output
    done = runner.invoke(main, ["plugins", "sign", str(side), "--module", str(module),
                                "--key", str(tmp_path / "ops.key")])
    assert done.exit_code == 0, done.output
    statement = (tmp_path / "greet.yaml.statement.json").read_bytes()
    assert statement == sidecar_statement(digest_of(wasm), "greet", PERMISSIVE)
    doc = json.loads(statement)
    assert doc["subject"] == [{"name": "greet", "digest": {"sha256": digest_of(wasm)[7:]}}]
    assert doc["predicate"] == {"sidecar": {"sha256": hashlib.sha256(PERMISSIVE).hexdigest()}}
    # What `cosign verify-blob --key ops.pub --signature greet.yaml.sig
    # greet.yaml.statement.json` checks: ECDSA P-256 / SHA-256 over the statement file.
    public = load_public_key(pub.read_bytes())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    signature = base64.b64decode((tmp_path / "greet.yaml.sig").read_bytes())
    public.verify(signature, statement, ec.ECDSA(hashes.SHA256()))
    # By digest and name: the same statement.
    again = runner.invoke(main, ["plugins", "sign", str(side), "--module", digest_of(wasm),
                                 "--name", "greet", "--key", str(tmp_path / "ops.key")])
    assert again.exit_code == 0, again.output
    assert (tmp_path / "greet.yaml.statement.json").read_bytes() == statement
    # And the catalog takes it for this module and name, not another name.
    sig = SidecarSignature(PERMISSIVE, signature)
    with publisher(tmp_path / "omnicore.db") as catalog:
        catalog.policy = TrustPolicy.from_keys([pub], require=True)
        with pytest.raises(SignatureRefused):
            catalog.publish(wasm, name="other", sidecar=PERMISSIVE_DOC,
                            signatures=[blob(key, wasm)], sidecar_signatures=[sig])
        assert catalog.publish(wasm, name="greet", sidecar=PERMISSIVE_DOC,
                               signatures=[blob(key, wasm)], sidecar_signatures=[sig])[1]


# ---- catalog.refuse_older at load -----------------------------------------------------------

def _error(app: OmniApp, name: str) -> str:
    follower = app.plugins.published.follower
    assert isinstance(follower, CatalogFollower)
    return str(follower.status().get(name, {}).get("error") or "")


def test_a_host_with_refuse_older_does_not_put_an_older_module_in_force(
        pg_url: str, start_host: Callable[..., OmniApp]) -> None:
    strict = start_host("strict", url=pg_url, catalog={"refuse_older": True})
    lenient = start_host("lenient", url=pg_url)
    one, two = echo_wasm("old", "1.0.0"), echo_wasm("old", "2.0.0")
    with publisher(pg_url) as catalog:  # a CLI whose own config lacks refuse_older
        catalog.publish(one, name="old")
        catalog.publish(two, name="old")
        eventually(lambda: serves(strict, "old", "2.0.0") and serves(lenient, "old", "2.0.0"))
        again = catalog.publication(one, name="old")
        assert again.made and again.older is not None
        eventually(lambda: serves(lenient, "old", "1.0.0"))
        eventually(lambda: "catalog.refuse_older is on" in _error(strict, "old"))
        assert "keeps serving v2" in _error(strict, "old")
        assert serves(strict, "old", "2.0.0")
        # A host started now, with the setting, does not put it in force either.
        cold = start_host("cold", url=pg_url, catalog={"refuse_older": True})
        eventually(lambda: "catalog.refuse_older is on" in _error(cold, "old"))
        assert not serves(cold, "old", "1.0.0")
        # A rollback to it is the operator's choice: every host follows.
        catalog.rollback("old", f"v{again.version.number}")
    eventually(lambda: serves(strict, "old", "1.0.0") and serves(cold, "old", "1.0.0"))
    # A rollback to an earlier version is no "older" publish either.
    with publisher(pg_url) as catalog:
        catalog.rollback("old", "v2")
    eventually(lambda: serves(strict, "old", "2.0.0") and serves(lenient, "old", "2.0.0"))


# ---- a waiver written straight into the table ----------------------------------------------

def test_a_waiver_written_into_the_table_is_audited_once_by_the_first_host(
        ops: tuple[Any, Path], pg_url: str, start_host: Callable[..., OmniApp]) -> None:
    key, pub = ops
    trust = {"trust": {"keys": [str(pub)], "require": True, "allow_unsigned_sidecar": True}}
    wasm = echo_wasm("waived", "1.0.0")
    sigs = [signature_to_json(blob(key, wasm)),
            {"kind": "unsigned-sidecar", "reason": "by hand", "by": "mallory"}]
    with publisher(pg_url) as catalog:  # the rows, as a writer of the table leaves them
        catalog._rows().publish("waived", digest_of(wasm), len(wasm), [wasm],
                                {"limits": {"timeout_ms": 4321}}, by="mallory", at=1.0,
                                keep=20, source=None, signatures=sigs)
    first = start_host("first", url=pg_url, plugins=trust)
    eventually(lambda: serves(first, "waived", "1.0.0"))

    def entries() -> list[Any]:
        return [e for e in first.storage.audit.entries(action_prefix="catalog.unsigned_sidecar",
                                                        target="waived")]
    eventually(lambda: len(entries()) == 1)
    after = entries()[0].after
    assert after["reason"] == "by hand" and after["by"] == "mallory"
    assert after["version"] == 1 and after["digest"] == digest_of(wasm)
    assert after["applied_by"].startswith("first (") and entries()[0].actor.startswith("host ")
    second = start_host("second", url=pg_url, plugins=trust)
    eventually(lambda: serves(second, "waived", "1.0.0"))
    first.stop()
    again = start_host("first-again", url=pg_url, plugins=trust)
    eventually(lambda: serves(again, "waived", "1.0.0"))
    assert len([e for e in again.storage.audit.entries(
        action_prefix="catalog.unsigned_sidecar", target="waived")]) == 1


def test_refuse_older_follows_a_config_reload(tmp_path: Path, module_cache: Path) -> None:
    root = tmp_path / "app"
    (root / "plugins").mkdir(parents=True)
    path = root / "omnicore.yaml"
    doc: dict[str, Any] = {"name": "older-reload", "data_dir": "data", "plugins_dir": "plugins",
                           "sandbox": {"cache_dir": str(module_cache)},
                           "catalog": {"poll_s": 0.05}}
    path.write_text(json.dumps(doc))
    app = OmniApp(config=load_config(path), entry_points=False)
    reloader = ConfigReload(path)
    app.add_module(reloader)
    app.start()

    def setting(on: bool) -> None:
        seen = reloader.reloads
        doc["catalog"]["refuse_older"] = on
        path.write_text(json.dumps(doc, indent=1 if on else 2))
        eventually(lambda: reloader.reloads > seen, "the reload")

    try:
        one, two = echo_wasm("old", "1.0.0"), echo_wasm("old", "2.0.0")
        with publisher(root / "data" / "omnicore.db") as catalog:
            catalog.publish(one, name="old")
            catalog.publish(two, name="old")
            eventually(lambda: serves(app, "old", "2.0.0"))
            setting(True)
            assert reloader.last is not None
            assert "catalog.refuse_older: true" in reloader.last.applied["catalog refuse_older"]
            catalog.publish(one, name="old")
            eventually(lambda: "catalog.refuse_older is on" in _error(app, "old"))
            assert serves(app, "old", "2.0.0")
            setting(False)  # the refused version is tried again at once, and serves
            eventually(lambda: serves(app, "old", "1.0.0"))
    finally:
        app.stop()
