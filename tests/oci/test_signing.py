"""cosign key-based signatures against a real registry, and the trust policy's one check
(omnicore.oci.trust.verify) as the catalog calls it."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from omnicore import oci
from omnicore.oci import signing
from omnicore.oci.client import RegistryClient
from tests.oci.conftest import make_module
from tests.registryserver import Registry


def _policy(*pems: bytes, require: bool = True) -> oci.TrustPolicy:
    return oci.TrustPolicy.from_keys([p.decode() for p in pems], require=require)


def _key(pair: tuple[bytes, bytes]) -> ec.EllipticCurvePrivateKey:
    return signing.load_private_key(pair[0])


def test_sign_then_pull_and_verify(registry: Registry, module: bytes,
                                   keypair: tuple[bytes, bytes]) -> None:
    ref = registry.ref("signed/greeter:1")
    pushed = oci.push(module, ref)
    signed = oci.sign(ref, _key(keypair))
    assert signed.signature_ref.tag == pushed.digest.replace(":", "-") + ".sig"

    pulled = oci.pull(ref, policy=_policy(keypair[1]))
    assert pulled.module == module
    assert pulled.verdict is not None and pulled.verdict.trusted
    assert oci.verify_ref(ref, _policy(keypair[1])).key is not None
    # What the catalog stores with the version, and checks again at every host's load.
    stored = [oci.signature_to_json(s) for s in pulled.signatures]
    again = [oci.signature_from_json(json.loads(json.dumps(d))) for d in stored]
    assert oci.verify(pulled.module_digest, again, _policy(keypair[1])).trusted


def test_the_signature_is_cosigns_simple_signing_at_the_sig_tag(
        registry: Registry, module: bytes, keypair: tuple[bytes, bytes]) -> None:
    ref = registry.ref("signed/layout:1")
    pushed = oci.push(module, ref)
    oci.sign(ref, _key(keypair))
    with RegistryClient(oci.Reference.parse(ref)) as client:
        raw, _, _ = client.get_manifest(pushed.digest.replace(":", "-") + ".sig",
                                        ("application/vnd.oci.image.manifest.v1+json",))
        doc = json.loads(raw)
        (layer,) = doc["layers"]
        assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
        payload = client.get_blob(layer["digest"], layer["size"])
    body = json.loads(payload)
    assert body["critical"]["type"] == "cosign container image signature"
    assert body["critical"]["image"]["docker-manifest-digest"] == pushed.digest
    assert body["critical"]["identity"]["docker-reference"] == f"{registry.host}/signed/layout"
    # cosign verify --key: ECDSA P-256 / SHA-256 over the payload, base64 DER in the annotation.
    public = signing.load_public_key(keypair[1])
    assert isinstance(public, ec.EllipticCurvePublicKey)
    public.verify(base64.b64decode(layer["annotations"]["dev.cosignproject.cosign/signature"]),
                  payload, ec.ECDSA(hashes.SHA256()))


def test_an_unsigned_module_is_refused_under_require_before_it_is_downloaded(
        registry: Registry, keypair: tuple[bytes, bytes]) -> None:
    module = make_module("unsigned")
    ref = registry.ref("signed/unsigned:1")
    pushed = oci.push(module, ref)
    with pytest.raises(oci.SignatureRefused) as caught:
        oci.pull(ref, policy=_policy(keypair[1]))
    message = str(caught.value)
    assert "\n" not in message
    assert f"module {pushed.module_digest}: it is not signed (trusted: key 1 (sha256:" in message
    assert "plugins.trust requires a trusted signature" in message
    # Without require the pull goes through and says what it found.
    pulled = oci.pull(ref, policy=_policy(keypair[1], require=False))
    assert pulled.verdict is not None and not pulled.verdict.trusted


def test_a_module_signed_by_an_unknown_key_is_refused_naming_the_key(
        registry: Registry, module: bytes, keypair: tuple[bytes, bytes],
        other_keypair: tuple[bytes, bytes]) -> None:
    ref = registry.ref("signed/unknown:1")
    oci.push(module, ref)
    oci.sign(ref, _key(other_keypair))
    other = signing.fingerprint(signing.load_public_key(other_keypair[1]))
    with pytest.raises(oci.SignatureRefused, match=f"it is signed by key {other[:23]}, which is "
                                                   "not trusted"):
        oci.pull(ref, policy=_policy(keypair[1]))


def test_a_tampered_artifact_is_refused(registry: Registry, keypair: tuple[bytes, bytes]) -> None:
    good, evil = make_module("good"), make_module("evil")
    ref = registry.ref("signed/tampered:1")
    signed_digest = oci.push(good, ref).digest
    oci.sign(ref, _key(keypair))
    # Someone pushes another module under the tag and copies the signatures to its .sig tag.
    evil_digest = oci.push(evil, ref).digest
    with RegistryClient(oci.Reference.parse(ref)) as client:
        sig, _, media = client.get_manifest(signing.signature_tag(signed_digest), (
            "application/vnd.oci.image.manifest.v1+json",))
        client.put_manifest(signing.signature_tag(evil_digest), sig, media)
    with pytest.raises(oci.SignatureRefused, match=r"a signature names the artifact "
                                                   r"sha256:[0-9a-f]{12}, not sha256:"):
        oci.pull(ref, policy=_policy(keypair[1]))


def test_verify_refuses_a_signature_of_another_module_or_altered_bytes(
        registry: Registry, keypair: tuple[bytes, bytes]) -> None:
    module = make_module("checked")
    ref = registry.ref("signed/checked:1")
    oci.push(module, ref)
    oci.sign(ref, _key(keypair))
    signatures = oci.pull(ref, policy=_policy(keypair[1])).signatures
    policy = _policy(keypair[1])
    other = "sha256:" + hashlib.sha256(b"other bytes").hexdigest()
    with pytest.raises(oci.SignatureRefused, match="a signature is of another module"):
        oci.verify(other, signatures, policy, plugin="checked")
    (sig,) = signatures
    altered = signing.OciSignature(sig.payload.replace(b"cosign", b"cosigN", 1), sig.signature,
                                   sig.manifest, sig.key_hint)
    with pytest.raises(oci.SignatureRefused, match=r"a signature's payload is of type "):
        oci.verify("sha256:" + hashlib.sha256(module).hexdigest(), [altered], policy)
    broken = sig.signature[:-1] + bytes([sig.signature[-1] ^ 1])
    flipped = signing.OciSignature(sig.payload, broken, sig.manifest, sig.key_hint)
    with pytest.raises(oci.SignatureRefused, match=r"its signature by key 1 \(sha256:[0-9a-f]{12}"
                                                   r"\) does not verify"):
        oci.verify("sha256:" + hashlib.sha256(module).hexdigest(), [flipped], policy)


def test_blob_signatures_are_cosign_sign_blob_checked_from_the_digest_alone(
        keypair: tuple[bytes, bytes], other_keypair: tuple[bytes, bytes]) -> None:
    module = make_module("blob")
    digest = "sha256:" + hashlib.sha256(module).hexdigest()
    sig = oci.BlobSignature(base64.b64decode(signing.sign_blob(_key(keypair), module)))
    assert oci.verify(digest, [sig], _policy(keypair[1])).trusted
    with pytest.raises(oci.SignatureRefused, match="its signature does not verify with a "
                                                   "trusted key"):
        oci.verify(digest, [sig], _policy(other_keypair[1]))
    tampered = "sha256:" + hashlib.sha256(module + b"\0").hexdigest()
    with pytest.raises(oci.SignatureRefused, match=f"refused module {tampered}"):
        oci.verify(tampered, [sig], _policy(keypair[1]))
    assert oci.signature_from_json(oci.signature_to_json(sig)) == sig


def test_no_policy_checks_nothing_and_require_without_keys_is_a_config_error() -> None:
    assert not oci.verify("sha256:" + "0" * 64, [], oci.TrustPolicy()).trusted
    from omnicore.errors import ConfigError

    with pytest.raises(ConfigError, match=r"plugins.trust.require is on but plugins.trust.keys "
                                          r"holds no key"):
        oci.TrustPolicy.from_keys([], require=True)


def test_an_encrypted_key_needs_its_password_and_cosigns_own_format_is_named() -> None:
    private, _ = signing.generate_key(b"pass-1234")
    with pytest.raises(ValueError, match="the key is encrypted"):
        signing.load_private_key(private)
    assert signing.load_private_key(private, b"pass-1234")
    with pytest.raises(ValueError, match="cosign's own encrypted key format"):
        signing.load_private_key(b"-----BEGIN ENCRYPTED COSIGN PRIVATE KEY-----\nxx\n")
