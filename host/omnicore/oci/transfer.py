"""Push, pull, sign and verify a plugin in a registry: what the CLI and the catalog call.

* :func:`push` lays a module (and its sidecar) out as a Wasm artifact and uploads it.
* :func:`pull` fetches one: the manifest (by tag or digest, capped, digest-checked), then —
  when a trust policy is active — its cosign signatures, checked **before** the module is
  downloaded, then the module, checked against its layer's digest and size. What it returns
  carries the signatures, so the catalog can store them with the version and every host
  can check them again at load (:func:`omnicore.oci.trust.verify`).
* :func:`sign` adds a cosign signature of an artifact at its ``.sig`` tag; :func:`verify_ref`
  checks an artifact's signatures without downloading the module.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from omnicore.oci.artifact import (
    MANIFEST_MEDIA_TYPE,
    MAX_CONFIG_BYTES,
    WasmManifest,
    build,
    check_config,
    read_manifest,
)
from omnicore.oci.client import Options, RegistryClient
from omnicore.oci.errors import ArtifactRefused, RegistryError, RegistryNotFound
from omnicore.oci.reference import Reference
from omnicore.oci.signing import (
    OciSignature,
    fingerprint,
    sign_payload,
    signature_layers,
    signature_manifest,
    signature_tag,
    simple_signing_payload,
)
from omnicore.oci.trust import TrustPolicy, Verdict, verify

__all__ = ["Pulled", "Pushed", "Signed", "pull", "push", "sign", "verify_ref"]

#: More signatures than this on one artifact are not read (each costs a blob fetch).
MAX_SIGNATURES = 32
#: A simple signing payload is a few hundred bytes.
MAX_PAYLOAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Pushed:
    """Where a push put the plugin: the reference by digest (the manifest's)."""

    reference: Reference
    digest: str
    module_digest: str
    size: int


@dataclass(frozen=True)
class Pulled:
    """A pulled plugin: its module (checked against its digest), its sidecar, and the
    signatures read (checked against the trust policy: ``verdict``)."""

    reference: Reference
    #: The artifact manifest's digest.
    digest: str
    module: bytes
    module_digest: str
    #: The name the artifact gives the plugin (its layer's title without ``.wasm``), if any.
    name: str | None
    sidecar: dict[str, Any] | None
    signatures: tuple[OciSignature, ...] = ()
    verdict: Verdict | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Signed:
    """What :func:`sign` stored: the signed artifact, its ``.sig`` tag and the key."""

    reference: Reference
    signature_ref: Reference
    key: str


def _ref(source: Reference | str) -> Reference:
    if isinstance(source, Reference):
        return source
    try:
        return Reference.parse(source)
    except ValueError as exc:
        raise RegistryError(str(exc), reference=str(source)[:200]) from None


def _name_of(ref: Reference) -> str:
    base = ref.repository.rsplit("/", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_.-]", "-", base) or "plugin"


def push(module: bytes, target: Reference | str, *, name: str | None = None,
         version: str | None = None, sidecar: Mapping[str, Any] | None = None,
         options: Options | None = None) -> Pushed:
    """Upload ``module`` (with ``sidecar``) to ``target`` (a tag) as a Wasm artifact."""
    ref = _ref(target)
    if ref.digest and not ref.tag:
        raise RegistryError(f"cannot push to {ref}: push to a tag (oci://REGISTRY/REPO:TAG); "
                            "the digest is what the push makes", reference=str(ref))
    if not module:
        raise ArtifactRefused(f"cannot push to {ref}: the module is empty", reference=str(ref))
    try:
        artifact = build(module, name=name or _name_of(ref), version=version, sidecar=sidecar)
    except ValueError as exc:
        raise ArtifactRefused(f"cannot push to {ref}: {exc}", reference=str(ref)) from None
    with RegistryClient(ref, options, what=f"push to {ref}") as client:
        client.put_blob(artifact.config)
        client.put_blob(artifact.module, digest=artifact.module_digest)
        digest = client.put_manifest(ref.tag or artifact.digest, artifact.manifest,
                                     MANIFEST_MEDIA_TYPE)
    return Pushed(ref.at(digest), digest, artifact.module_digest, len(module))


def _artifact(client: RegistryClient, ref: Reference) -> tuple[bytes, str, WasmManifest]:
    data, digest, media = client.get_manifest(ref.ref, (MANIFEST_MEDIA_TYPE,))
    try:
        return data, digest, read_manifest(data, media)
    except ValueError as exc:
        raise ArtifactRefused(f"cannot {client.what}: {exc}", reference=str(ref)) from None


def _signatures(client: RegistryClient, ref: Reference, digest: str,
                manifest: bytes) -> tuple[OciSignature, ...]:
    try:
        sig_manifest, _, _ = client.get_manifest(signature_tag(digest), (MANIFEST_MEDIA_TYPE,))
    except RegistryNotFound:
        return ()
    try:
        layers = signature_layers(sig_manifest)
    except ValueError as exc:
        raise ArtifactRefused(f"cannot {client.what}: {exc} (tag {signature_tag(digest)})",
                              reference=str(ref)) from None
    found = []
    for payload_digest_, size, signature, hint in layers[:MAX_SIGNATURES]:
        payload = client.get_blob(payload_digest_, size, cap=MAX_PAYLOAD_BYTES,
                                  cap_key="64 KiB for a signature payload",
                                  what=f"the signature payload {payload_digest_[:19]}")
        found.append(OciSignature(payload, signature, manifest, hint))
    return tuple(found)


def pull(source: Reference | str, *, options: Options | None = None,
         policy: TrustPolicy | None = None, plugin: str | None = None) -> Pulled:
    """Fetch the plugin ``source`` names, every byte checked against its digest. Under an
    active ``policy`` its signatures are read and checked before the module is downloaded
    (SignatureRefused when ``require`` finds none trusted)."""
    ref = _ref(source)
    policy = policy or TrustPolicy()
    with RegistryClient(ref, options, what=f"pull {ref}") as client:
        manifest, digest, wasm = _artifact(client, ref)
        name = wasm.title.removesuffix(".wasm") if wasm.title else None
        signatures: tuple[OciSignature, ...] = ()
        verdict = None
        if policy.active:
            signatures = _signatures(client, ref, digest, manifest)
            verdict = verify(wasm.layer.digest, signatures, policy, plugin=plugin or name)
        config = client.get_blob(wasm.config.digest, wasm.config.size, cap=MAX_CONFIG_BYTES,
                                 cap_key="1 MiB for a config", what="the config")
        try:
            check_config(config, wasm)
        except ValueError as exc:
            raise ArtifactRefused(f"cannot pull {ref}: {exc}", reference=str(ref)) from None
        module = client.get_blob(wasm.layer.digest, wasm.layer.size, what="the module")
    # get_blob checked the module against the layer's digest as it streamed in.
    return Pulled(ref.at(digest), digest, module, wasm.layer.digest, name, wasm.sidecar,
                  signatures, verdict, dict(wasm.annotations))


def sign(source: Reference | str, key: ec.EllipticCurvePrivateKey, *,
         options: Options | None = None) -> Signed:
    """Sign the artifact ``source`` names (cosign's simple signing, at its ``.sig`` tag).
    A signature by the same key over the same payload replaces the old one; others stay."""
    ref = _ref(source)
    with RegistryClient(ref, options, what=f"sign {ref}") as client:
        manifest, digest, _wasm = _artifact(client, ref)
        payload = simple_signing_payload(f"{ref.registry}/{ref.repository}", digest)
        signature = sign_payload(key, payload)
        keyprint = fingerprint(key.public_key())
        old = _signatures(client, ref, digest, manifest)
        layers = [(s.payload, s.signature, s.key_hint) for s in old
                  if not (s.key_hint == keyprint and s.payload == payload)]
        layers.append((payload, signature, keyprint))
        config, sig_manifest = signature_manifest(layers)
        for layer_payload, _, _ in layers:
            client.put_blob(layer_payload)
        client.put_blob(config)
        tag = signature_tag(digest)
        client.put_manifest(tag, sig_manifest, MANIFEST_MEDIA_TYPE)
    return Signed(ref.at(digest), ref.with_tag(tag), keyprint)


def verify_ref(source: Reference | str, policy: TrustPolicy, *,
               options: Options | None = None) -> Verdict:
    """Check the signatures of the artifact ``source`` names against ``policy`` (the
    module is not downloaded: the signed manifest names its digest)."""
    ref = _ref(source)
    with RegistryClient(ref, options, what=f"verify {ref}") as client:
        manifest, digest, wasm = _artifact(client, ref)
        signatures = _signatures(client, ref, digest, manifest)
    name = wasm.title.removesuffix(".wasm") if wasm.title else None
    return verify(wasm.layer.digest, signatures, policy, plugin=name)
