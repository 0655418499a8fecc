"""A signature covers the sidecar too (issue 61, deliverable 2): under ``plugins.trust.require``
a published sidecar is applied only when it is the signed artifact's own, or its file is
signed by a trusted key, or an explicit, audited override is admitted by
``plugins.trust.allow_unsigned_sidecar``; every host checks that again before it applies a
version, so one written straight into the catalog table is refused too. A module older than
the one in force is said so, and ``catalog.refuse_older`` refuses it. Real registry
(tests/registryserver.py), real SQLite."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from omnicore import oci
from omnicore.app import OmniApp
from omnicore.cli import main
from omnicore.config.schema import CatalogConfig
from omnicore.oci import BlobSignature, SignatureRefused, generate_key, load_private_key
from omnicore.oci.signing import SidecarSignature, sidecar_statement, sign_blob
from omnicore.oci.trust import TrustPolicy, Waiver, check_version, verify_sidecar
from omnicore.plugins.catalog import OlderModule, digest_of
from omnicore.storage import SQLiteStorage
from tests.host_fixtures import echo_wasm
from tests.plugins.catalog_fixtures import publisher, serves
from tests.registryserver import Registry
from tests.waiting import eventually

SIGNED_SIDECAR = {"config": {"who": "signer"}, "limits": {"timeout_ms": 2000}}
EVIL = "config:\n  who: evil\nlimits:\n  timeout_ms: 999999\nenabled: true\n"


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


def write_app(app: Path, cache: Path, *, extra_trust: str = "", catalog: str = "") -> Path:
    (app / "plugins").mkdir(parents=True, exist_ok=True)
    (app / "omnicore.yaml").write_text(
        "name: signed\ndata_dir: data\nplugins_dir: plugins\n"
        f"sandbox: {{cache_dir: {cache}}}\n{catalog}"
        f"plugins:\n  trust:\n    keys: [../ops.pub]\n    require: true\n{extra_trust}")
    return app


@pytest.fixture
def appdir(tmp_path: Path, module_cache: Path) -> Path:
    keypair(tmp_path, "ops")
    keypair(tmp_path, "stranger")
    return write_app(tmp_path / "app", module_cache)


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


def audit(appdir: Path) -> list[Any]:
    store = SQLiteStorage(appdir / "data" / "omnicore.db")
    try:
        return list(store.audit.entries(limit=100))
    finally:
        store.close()


def signed_artifact(registry: Registry, tmp_path: Path, tag: str, version: str = "1.0.0"
                    ) -> tuple[str, bytes]:
    """greeter pushed with SIGNED_SIDECAR and signed by the ops key: its reference."""
    wasm = echo_wasm("greeter", version)
    file = tmp_path / "greeter.wasm"
    file.write_bytes(wasm)
    side = tmp_path / "pushed.json"
    side.write_text(json.dumps(SIGNED_SIDECAR))
    ref = registry.ref(f"sidecar{tag}/greeter:1")  # its own repository: its own .sig
    pushed = CliRunner().invoke(main, ["plugins", "push", str(file), ref, "--sidecar",
                                       str(side)])
    assert pushed.exit_code == 0, pushed.output
    signed = CliRunner().invoke(main, ["plugins", "sign", ref, "--key",
                                       str(tmp_path / "ops.key")])
    assert signed.exit_code == 0, signed.output
    return ref, wasm


def test_a_signed_artifact_with_a_foreign_sidecar_is_refused_under_require(
        registry: Registry, appdir: Path, tmp_path: Path) -> None:
    ref, wasm = signed_artifact(registry, tmp_path, "1")
    evil = tmp_path / "evil.yaml"
    evil.write_text(EVIL)
    code, _, err = run(appdir, "publish", ref, "--sidecar", str(evil))
    line = err.strip().splitlines()[-1]
    assert code == 1, err
    assert digest_of(wasm) in line and "sidecar" in line and "not the sidecar of the " \
        "artifact ops.pub" in line, line
    assert stored(appdir, "greeter") == []
    # The artifact's own sidecar: the signature covers it.
    code, out, err = run(appdir, "publish", ref, "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["sidecar"] == SIGNED_SIDECAR
    assert doc["sidecar_cover"].startswith("the signed artifact's own (signed by ops.pub")


def test_a_foreign_sidecar_signed_by_a_trusted_key_is_accepted(
        registry: Registry, appdir: Path, tmp_path: Path) -> None:
    ref, wasm = signed_artifact(registry, tmp_path, "2")
    evil = tmp_path / "evil.yaml"
    evil.write_text(EVIL)
    stranger = load_private_key((tmp_path / "stranger.key").read_bytes())
    ops = load_private_key((tmp_path / "ops.key").read_bytes())
    sig = tmp_path / "evil.yaml.sig"
    def statement(text: str) -> bytes:
        return sidecar_statement(digest_of(wasm), "greeter", text.encode())

    sig.write_bytes(sign_blob(stranger, statement(EVIL)))  # an untrusted key: refused
    code, _, err = run(appdir, "publish", ref, "--sidecar", str(evil))
    assert code == 1 and "sidecar" in err, err
    sig.write_bytes(sign_blob(ops, statement("config: {who: other}\n")))  # another's: refused
    code, _, err = run(appdir, "publish", ref, "--sidecar", str(evil))
    assert code == 1 and "sidecar" in err, err
    sig.write_bytes(sign_blob(ops, EVIL.encode()))  # the older form, the bytes alone: refused
    code, _, err = run(appdir, "publish", ref, "--sidecar", str(evil))
    assert code == 1 and "does not bind this module and plugin name" in err, err
    sig.write_bytes(sign_blob(ops, statement(EVIL)))
    code, out, err = run(appdir, "publish", ref, "--sidecar", str(evil), "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["sidecar"]["config"] == {"who": "evil"}
    assert doc["sidecar_cover"].startswith("its file signed by ops.pub")
    kinds = [s["kind"] for s in stored(appdir, "greeter")[0].signatures]
    assert kinds == ["cosign", "cosign-sidecar"]


def test_an_override_is_refused_by_default_and_audited_when_allowed(
        registry: Registry, appdir: Path, tmp_path: Path, module_cache: Path) -> None:
    ref, _ = signed_artifact(registry, tmp_path, "3")
    evil = tmp_path / "evil.yaml"
    evil.write_text(EVIL)
    code, _, err = run(appdir, "publish", ref, "--sidecar", str(evil), "--unsigned-sidecar",
                       "hotfix INC-42")
    assert code == 1 and "allow_unsigned_sidecar is off" in err, err
    assert stored(appdir, "greeter") == []
    write_app(appdir, module_cache, extra_trust="    allow_unsigned_sidecar: true\n")
    code, _, err = run(appdir, "publish", ref, "--sidecar", str(evil))  # no override: no
    assert code == 1 and "sidecar" in err, err
    code, _, err = run(appdir, "publish", ref, "--sidecar", str(evil), "--unsigned-sidecar",
                       "hotfix INC-42")
    assert code == 0, err
    assert "applied unsigned, by override (hotfix INC-42)" in err
    kept = stored(appdir, "greeter")[0]
    assert {"kind": "unsigned-sidecar", "reason": "hotfix INC-42", "by": "cli"} in \
        kept.signatures
    verbs = {(e.action, json.dumps(e.after)) for e in audit(appdir)}
    assert any(v == "catalog.unsigned_sidecar" and "hotfix INC-42" in a for v, a in verbs)
    assert any(v == "catalog.publish" and "by override: hotfix INC-42" in a for v, a in verbs)


def test_a_file_and_its_sig_cover_the_module_only(appdir: Path, tmp_path: Path) -> None:
    ops = load_private_key((tmp_path / "ops.key").read_bytes())
    wasm = echo_wasm("conf", "1.0.0")
    file = tmp_path / "conf.wasm"
    file.write_bytes(wasm)
    file.with_name("conf.wasm.sig").write_bytes(sign_blob(ops, wasm))
    side = tmp_path / "conf.yaml"
    side.write_text(EVIL)
    code, _, err = run(appdir, "publish", str(file))
    assert code == 1 and "no trusted key signed it" in err, err
    # `omnicore plugins sign SIDECAR --module FILE --key` writes SIDECAR.sig over the
    # statement binding it to the module and name (SIDECAR.statement.json beside it).
    signed = CliRunner().invoke(main, ["plugins", "sign", str(side), "--module", str(file),
                                       "--key", str(tmp_path / "ops.key")])
    assert signed.exit_code == 0 and tmp_path.joinpath("conf.yaml.sig").is_file()
    code, _, err = run(appdir, "publish", str(file))
    assert code == 0, err
    # An empty sidecar claims nothing: the module's signature is enough.
    side.write_text("")
    tmp_path.joinpath("conf.yaml.sig").unlink()
    code, out, err = run(appdir, "publish", str(file), "--json")
    assert code == 0 and json.loads(out)["sidecar_cover"].startswith("empty"), err


def test_a_version_written_straight_into_the_table_is_refused_by_every_host(
        registry: Registry, tmp_path: Path,
        start_host: Callable[..., OmniApp]) -> None:
    ops, ops_pub = keypair(tmp_path, "ops")
    ref, wasm = signed_artifact(registry, tmp_path, "4")
    pulled = oci.pull(ref, policy=TrustPolicy.from_keys([ops_pub], require=True))
    (tmp_path / "data").mkdir(exist_ok=True)
    host = start_host(plugins={"trust": {"keys": [str(ops_pub)], "require": True}})
    # The publisher below holds no policy: the table gets what any writer of it could put.
    with publisher(tmp_path / "data" / "omnicore.db") as catalog:
        catalog.publish(pulled.module, sidecar=pulled.sidecar, signatures=pulled.signatures)
        eventually(lambda: serves(host, "greeter", "1.0.0"))
        two = echo_wasm("greeter", "2.0.0")
        # Version 2: the module signed (sign-blob) with a foreign sidecar, and version 3: the
        # signed artifact's signature with another sidecar and a forged override.
        blob = BlobSignature(base64.b64decode(sign_blob(ops, two)))
        v2, _ = catalog.publish(two, sidecar={"limits": {"timeout_ms": 999999}},
                                signatures=[blob])
        follower = host.plugins.published.follower
        assert follower is not None

        def error() -> str:
            status = follower.status().get("greeter", {})
            return str(status.get("error") or "") if status.get("wanted") == v2.digest else ""
        eventually(lambda: "sidecar" in error())
        assert v2.digest in error() and "no trusted key signed it" in error()
        assert serves(host, "greeter", "1.0.0")  # the old version keeps serving
    # What a host checks, on the stored form: the forged override is not admitted.
    forged = [*(oci.signature_to_json(s) for s in pulled.signatures),
              Waiver("forged").to_json()]
    policy = TrustPolicy.from_keys([ops_pub], require=True)
    with pytest.raises(SignatureRefused, match="allow_unsigned_sidecar is off"):
        check_version(digest_of(wasm), {"config": {"who": "evil"}}, forged, policy)
    lenient = TrustPolicy.from_keys([ops_pub], require=True, unsigned_sidecars=True)
    _, cover = check_version(digest_of(wasm), {"config": {"who": "evil"}}, forged, lenient)
    assert cover.endswith("by override: forged")
    _, cover = check_version(digest_of(wasm), SIGNED_SIDECAR, forged[:-1], policy)
    assert cover.startswith("the signed artifact's own")


def test_a_sidecar_signature_covers_yaml_toml_and_json(tmp_path: Path) -> None:
    ops, ops_pub = keypair(tmp_path, "ops")
    policy = TrustPolicy.from_keys([ops_pub], require=True)
    want = {"config": {"who": "x"}, "limits": {"timeout_ms": 10}}
    for text in (b"config: {who: x}\nlimits: {timeout_ms: 10}\n",
                 b'[config]\nwho = "x"\n[limits]\ntimeout_ms = 10\n',
                 json.dumps(want).encode()):
        sig = SidecarSignature(text, base64.b64decode(
            sign_blob(ops, sidecar_statement("sha256:" + "0" * 64, "p", text))))
        cover = verify_sidecar("sha256:" + "0" * 64, want, [], policy,
                               sidecar_signatures=[sig], plugin="p")
        assert cover.startswith("its file signed by ops.pub"), text
    text = b"config: {who: y}\n"
    sig = SidecarSignature(text, base64.b64decode(
        sign_blob(ops, sidecar_statement("sha256:" + "0" * 64, "p", text))))
    with pytest.raises(SignatureRefused):
        verify_sidecar("sha256:" + "0" * 64, want, [], policy, sidecar_signatures=[sig],
                       plugin="p")


def test_an_older_module_is_said_so_and_refused_on_request(
        appdir: Path, tmp_path: Path) -> None:
    ops = load_private_key((tmp_path / "ops.key").read_bytes())
    files = {}
    for version in ("1.0.0", "2.0.0"):
        wasm = echo_wasm("old", version)
        file = tmp_path / version / "old.wasm"
        file.parent.mkdir()
        file.write_bytes(wasm)
        file.with_name("old.wasm.sig").write_bytes(sign_blob(ops, wasm))
        files[version] = file
    code, _, err = run(appdir, "publish", str(files["1.0.0"]))
    # No host runs: the publish says so, not that every host loads it within seconds.
    assert code == 0 and "no host of the store is running now" in err, err
    assert "within a few seconds" not in err
    code, _, err = run(appdir, "publish", str(files["2.0.0"]))
    assert code == 0 and "OLDER" not in err, err
    # Version 1's module again: published (a new version), and said to be older.
    code, out, err = run(appdir, "publish", str(files["1.0.0"]))
    assert code == 0, err
    assert "published old v3" in out
    assert "OLDER than the one in force (v2" in err and "published before as v1" in err
    entry = next(e for e in audit(appdir) if e.action == "catalog.publish")
    assert entry.after["older_than_in_force"]["seen_as"] == "v1", entry
    # catalog.refuse_older: the catalog refuses it, and says what a rollback is.
    with publisher(appdir / "data" / "omnicore.db",
                   CatalogConfig(refuse_older=True)) as catalog:
        wasm2 = files["2.0.0"].read_bytes()
        with pytest.raises(OlderModule, match="rollback old v2"):
            catalog.publish(wasm2, name="old")
        done = catalog.publication(echo_wasm("old", "3.0.0"), name="old")
        assert done.made and done.older is None
