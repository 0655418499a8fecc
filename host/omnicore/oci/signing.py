"""cosign's key-based signatures, written and read without cosign (specs/security.md).

Two forms, both cosign's own, so ``cosign verify --key`` and ``cosign verify-blob --key``
check what omnicore signs, and omnicore checks what cosign signs with a key:

* **In a registry** (``cosign sign --key``): the artifact's manifest digest goes in a
  "simple signing" payload (``critical.image.docker-manifest-digest``, ``critical.type``
  ``cosign container image signature``); the payload is a blob, the layer of a manifest
  tagged ``sha256-<hex>.sig`` in the same repository, and the ECDSA P-256 / SHA-256
  signature of the payload is that layer's ``dev.cosignproject.cosign/signature``
  annotation (base64 of its DER). Several signatures are several layers of that manifest.
* **Beside a file** (``cosign sign-blob --key``): ``FILE.sig`` holds the base64 DER
  signature of the file's bytes. As ECDSA signs a hash, it is checked against the module's
  sha256 alone, which is what the catalog keeps.
* **Beside a sidecar** (``cosign sign-blob --key`` again): ``NAME.yaml.sig`` signs a
  statement binding the sidecar file's bytes to one module and one plugin name
  (:func:`sidecar_statement`: an in-toto Statement v1, canonical JSON, whose subject is the
  plugin name and the module's sha256 and whose predicate is the sidecar's sha256); the file's
  bytes travel with it (:class:`SidecarSignature`) and each host rebuilds the statement from
  the version it applies. A sidecar that is not the signed artifact's own is trusted only so
  (specs/security.md, "What a signature covers").

Keys are PEM: the public key PKIX (``PUBLIC KEY``, as cosign writes ``cosign.pub``), the
private key PKCS#8, encrypted when a password is given. cosign's own encrypted private key
(``ENCRYPTED COSIGN PRIVATE KEY``: scrypt and NaCl secretbox) is not read here: sign with an
omnicore key, or export cosign's with ``cosign import-key-pair``'s inverse (any PKCS#8 key
works). omnicore's signature layers also carry ``dev.omnicore.signature/key`` naming the
key's fingerprint: a hint for messages ("signed by an unknown key sha256:..."), never
trusted for a decision.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa, utils

__all__ = [
    "KEY_ANNOTATION",
    "SIGNATURE_ANNOTATION",
    "SIMPLESIGNING_MEDIA_TYPE",
    "BlobSignature",
    "OciSignature",
    "PublicKey",
    "SidecarSignature",
    "Signature",
    "fingerprint",
    "generate_key",
    "load_private_key",
    "load_public_key",
    "sidecar_signature_from_json",
    "sidecar_signature_to_json",
    "sidecar_statement",
    "sign_blob",
    "sign_payload",
    "signature_from_json",
    "signature_manifest",
    "signature_tag",
    "signature_to_json",
    "simple_signing_payload",
    "verify_prehashed",
    "verify_signature",
]

SIMPLESIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
KEY_ANNOTATION = "dev.omnicore.signature/key"
COSIGN_TYPE = "cosign container image signature"
_IMAGE_CONFIG = "application/vnd.oci.image.config.v1+json"

PublicKey: TypeAlias = "ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey"


@dataclass(frozen=True)
class BlobSignature:
    """A ``cosign sign-blob`` signature of the module's bytes (DER)."""

    signature: bytes
    #: The signer's fingerprint as the signer said (a hint for messages only).
    key_hint: str = ""


@dataclass(frozen=True)
class OciSignature:
    """A ``cosign sign`` signature found at the artifact's ``.sig`` tag: the payload it
    signs, the signature (DER), and the artifact manifest the payload names, which links the
    signature to the module (its one layer's digest)."""

    payload: bytes
    signature: bytes
    manifest: bytes
    key_hint: str = ""


Signature: TypeAlias = "BlobSignature | OciSignature"


@dataclass(frozen=True)
class SidecarSignature:
    """A ``cosign sign-blob`` signature of a sidecar file's statement
    (:func:`sidecar_statement`: the file bound to a module and a plugin name): the file's
    bytes (they travel with it: a host parses them and compares them with the sidecar it
    applies) and the signature (DER) of the statement."""

    text: bytes
    signature: bytes
    key_hint: str = ""


#: The most a signed sidecar file may hold (the artifact annotation's cap).
MAX_SIDECAR_TEXT = 64 * 1024

#: What a sidecar signature signs: an in-toto Statement (v1) of this predicate type.
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
SIDECAR_PREDICATE = "https://omnicore.dev/sidecar/v1"


def sidecar_statement(module_digest: str, name: str, text: bytes) -> bytes:
    """The bytes a sidecar signature signs: the sidecar file ``text`` bound to the module
    ``module_digest`` (``sha256:<hex>``) published as plugin ``name``. Canonical JSON (sorted
    keys, no spaces, ASCII), so a host rebuilds it byte for byte from the version it applies
    and ``cosign sign-blob`` / ``cosign verify-blob`` work on the same file
    (``omnicore plugins sign SIDECAR --module ... --name ...`` writes it beside the ``.sig``).
    A signature of the sidecar's bytes alone (the form before this one) binds no module and
    no name: it verifies against no statement."""
    doc = {"_type": STATEMENT_TYPE,
           "subject": [{"name": name,
                        "digest": {"sha256": module_digest.removeprefix("sha256:")}}],
           "predicateType": SIDECAR_PREDICATE,
           "predicate": {"sidecar": {"sha256": hashlib.sha256(text).hexdigest()}}}
    return json.dumps(doc, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode()


def sidecar_signature_to_json(sig: SidecarSignature) -> dict[str, str]:
    """A sidecar signature as JSON (kept with a catalog version beside the module's)."""
    b64 = base64.b64encode
    return {"kind": "cosign-sidecar", "sidecar": b64(sig.text).decode(),
            "signature": b64(sig.signature).decode(), "key": sig.key_hint}


def sidecar_signature_from_json(doc: Mapping[str, Any]) -> SidecarSignature:
    """The inverse of :func:`sidecar_signature_to_json`; ValueError for anything else."""
    try:
        if doc["kind"] == "cosign-sidecar":
            text = base64.b64decode(doc["sidecar"], validate=True)
            if len(text) <= MAX_SIDECAR_TEXT:
                return SidecarSignature(text, base64.b64decode(doc["signature"],
                                                               validate=True),
                                        str(doc.get("key") or ""))
    except (KeyError, TypeError, ValueError):
        pass
    raise ValueError("not a stored sidecar signature (kind cosign-sidecar, base64 fields, "
                     f"a sidecar of at most {MAX_SIDECAR_TEXT} bytes)")


def signature_to_json(sig: BlobSignature | OciSignature) -> dict[str, str]:
    """A signature as JSON (what the catalog stores with a version)."""
    b64 = base64.b64encode
    if isinstance(sig, OciSignature):
        return {"kind": "cosign", "payload": b64(sig.payload).decode(),
                "signature": b64(sig.signature).decode(), "manifest": b64(sig.manifest).decode(),
                "key": sig.key_hint}
    return {"kind": "cosign-blob", "signature": b64(sig.signature).decode(),
            "key": sig.key_hint}


def signature_from_json(doc: Mapping[str, Any]) -> BlobSignature | OciSignature:
    """The inverse of :func:`signature_to_json`; ValueError for anything else."""
    try:
        kind = doc["kind"]
        hint = str(doc.get("key") or "")
        signature = base64.b64decode(doc["signature"], validate=True)
        if kind == "cosign":
            return OciSignature(base64.b64decode(doc["payload"], validate=True), signature,
                                base64.b64decode(doc["manifest"], validate=True), hint)
        if kind == "cosign-blob":
            return BlobSignature(signature, hint)
    except (KeyError, TypeError, ValueError):
        pass
    raise ValueError("not a stored signature (kind cosign or cosign-blob, base64 fields)")


# ---- keys ---------------------------------------------------------------------------------

def generate_key(password: bytes | None = None) -> tuple[bytes, bytes]:
    """A new ECDSA P-256 key pair as PEM: (private PKCS#8, public PKIX)."""
    key = ec.generate_private_key(ec.SECP256R1())
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password
        else serialization.NoEncryption())
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                encryption)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def load_private_key(pem: bytes, password: bytes | None = None) -> ec.EllipticCurvePrivateKey:
    """An ECDSA private key from PEM; ValueError says why not (one line)."""
    if b"ENCRYPTED COSIGN PRIVATE KEY" in pem or b"ENCRYPTED SIGSTORE PRIVATE KEY" in pem:
        raise ValueError("it is cosign's own encrypted key format (scrypt + secretbox), which "
                         "omnicore does not read: make a key with `omnicore plugins keygen`, "
                         "or sign with cosign itself (omnicore verifies cosign's signatures)")
    try:
        key = serialization.load_pem_private_key(pem, password=password or None)
    except TypeError:
        raise ValueError("the key is encrypted: give its password (OMNICORE_SIGNING_PASSWORD "
                         "or --password-stdin)") from None
    except ValueError as exc:
        raise ValueError(f"it is not a PEM private key, or the password is wrong ({exc})"
                         ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or \
            not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("omnicore signs with ECDSA P-256 keys (cosign's default); this key is "
                         f"{type(key).__name__.removeprefix('_')}")
    return key


def load_public_key(pem: bytes) -> PublicKey:
    """A public key from PEM (PKIX, as ``cosign.pub``), or from a private key's PEM."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        try:
            key = load_private_key(pem).public_key()
        except ValueError:
            raise ValueError("it is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey |
                      ed25519.Ed25519PublicKey):
        raise ValueError(f"{type(key).__name__} keys are not used for cosign signatures")
    return key


def fingerprint(key: PublicKey) -> str:
    """``sha256:<hex>`` of the key's DER SubjectPublicKeyInfo."""
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


# ---- signing and checking -----------------------------------------------------------------

def simple_signing_payload(repository: str, manifest_digest: str) -> bytes:
    """The payload ``cosign sign`` signs for ``repository`` (``registry/repo``) at
    ``manifest_digest``."""
    doc = {"critical": {"identity": {"docker-reference": repository},
                        "image": {"docker-manifest-digest": manifest_digest},
                        "type": COSIGN_TYPE},
           "optional": None}
    return json.dumps(doc, separators=(",", ":")).encode()


def payload_digest(payload: bytes) -> str:
    """The manifest digest a simple signing payload names; ValueError if it is not one."""
    try:
        doc = json.loads(payload)
        critical = doc["critical"]
        kind = critical["type"]
        image = {k.lower(): v for k, v in critical["image"].items()}
        digest = image["docker-manifest-digest"]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ValueError("not a cosign simple signing payload") from None
    if kind != COSIGN_TYPE or not isinstance(digest, str):
        raise ValueError(f"of type {str(kind)[:80]!r}, not {COSIGN_TYPE!r}")
    return digest


def sign_payload(key: ec.EllipticCurvePrivateKey, payload: bytes) -> bytes:
    """The DER ECDSA P-256 / SHA-256 signature of ``payload``."""
    return key.sign(payload, ec.ECDSA(hashes.SHA256()))


def sign_blob(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """``cosign sign-blob --key``'s output for ``data``: base64 of the DER signature."""
    return base64.b64encode(sign_payload(key, data))


def verify_signature(key: PublicKey, signature: bytes, data: bytes) -> bool:
    """Whether ``signature`` is ``key``'s over ``data`` (SHA-256; ECDSA, RSA PKCS#1 v1.5 or
    Ed25519, as cosign's verifiers take)."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(hashes.SHA256()))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        else:
            key.verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True


def verify_prehashed(key: PublicKey, signature: bytes, sha256: bytes) -> bool:
    """Whether ``signature`` is ``key``'s over the data whose SHA-256 is ``sha256`` (a
    ``sign-blob`` signature checked from the digest alone; not possible with Ed25519)."""
    pre = utils.Prehashed(hashes.SHA256())
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, sha256, ec.ECDSA(pre))
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, sha256, padding.PKCS1v15(), pre)
        else:
            return False
    except (InvalidSignature, ValueError):
        return False
    return True


def signature_tag(manifest_digest: str) -> str:
    """The tag cosign keeps an artifact's signatures under: ``sha256-<hex>.sig``."""
    return manifest_digest.replace(":", "-") + ".sig"


def signature_manifest(layers: list[tuple[bytes, bytes, str]]) -> tuple[bytes, bytes]:
    """The config and manifest of a ``.sig`` tag holding ``layers`` (payload, DER
    signature, key fingerprint), as cosign writes them."""
    descriptors = []
    diff_ids = []
    for payload, signature, key in layers:
        digest = "sha256:" + hashlib.sha256(payload).hexdigest()
        notes = {SIGNATURE_ANNOTATION: base64.b64encode(signature).decode()}
        if key:
            notes[KEY_ANNOTATION] = key
        descriptors.append({"mediaType": SIMPLESIGNING_MEDIA_TYPE, "size": len(payload),
                            "digest": digest, "annotations": notes})
        diff_ids.append(digest)
    config = json.dumps({"architecture": "", "created": "0001-01-01T00:00:00Z",
                         "history": [{"created": "0001-01-01T00:00:00Z"}], "os": "",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}, "config": {}},
                        separators=(",", ":")).encode()
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": _IMAGE_CONFIG, "size": len(config),
                           "digest": "sha256:" + hashlib.sha256(config).hexdigest()},
                "layers": descriptors}
    return config, json.dumps(manifest, separators=(",", ":")).encode()


def signature_layers(manifest: bytes) -> list[tuple[str, int, bytes, str]]:
    """The signature layers of a ``.sig`` manifest: (payload digest, size, DER signature,
    key hint); layers that are not cosign signatures are skipped. ValueError when the
    manifest is not JSON of a manifest."""
    try:
        doc = json.loads(manifest)
        layers = doc["layers"]
    except (ValueError, KeyError, TypeError):
        raise ValueError("the signature manifest is not an OCI manifest") from None
    out = []
    for layer in layers if isinstance(layers, list) else []:
        if not isinstance(layer, dict) or layer.get("mediaType") != SIMPLESIGNING_MEDIA_TYPE:
            continue
        notes = layer.get("annotations") or {}
        text, digest, size = notes.get(SIGNATURE_ANNOTATION), layer.get("digest"), \
            layer.get("size")
        if not isinstance(text, str) or not isinstance(digest, str) or \
                not isinstance(size, int):
            continue
        try:
            signature = base64.b64decode(text, validate=True)
        except ValueError:
            continue
        hint = notes.get(KEY_ANNOTATION)
        out.append((digest, size, signature, hint if isinstance(hint, str) else ""))
    return out
