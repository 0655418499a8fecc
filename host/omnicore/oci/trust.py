"""The operator's trust policy (``plugins.trust``) and the one check every door calls.

:func:`verify` is what the catalog calls at publish and at every host's load, and what a
pull calls before it downloads the module: given a module's digest and the signatures that
travel with it, it finds one made by a key ``plugins.trust.keys`` holds, or — when
``plugins.trust.require`` is on — refuses with one line naming the digest and the key.

What a signature proves (specs/security.md, "Signed plugins"): that the holder of a trusted
private key signed these module bytes — directly (``cosign sign-blob``), or an OCI manifest
whose one ``application/wasm`` layer is these bytes (``cosign sign``). Not who published the
version, not that the sidecar's requests are wise (grants stay the operator's), not freshness:
an old signed module stays valid until its key leaves the policy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from omnicore.errors import ConfigError
from omnicore.oci.artifact import read_manifest
from omnicore.oci.errors import SignatureRefused
from omnicore.oci.signing import (
    BlobSignature,
    OciSignature,
    PublicKey,
    fingerprint,
    load_public_key,
    payload_digest,
    verify_prehashed,
    verify_signature,
)

__all__ = ["TrustConfigLike", "TrustPolicy", "TrustedKey", "Verdict", "verify"]


class TrustConfigLike(Protocol):
    """What :meth:`TrustPolicy.from_config` reads (``omnicore.config.schema.TrustConfig``)."""

    keys: list[str]
    require: bool


@dataclass(frozen=True)
class TrustedKey:
    """A public key the operator trusts; ``name`` is its file name (or ``key N`` for PEM
    written in the config)."""

    name: str
    key: PublicKey
    fingerprint: str

    @property
    def label(self) -> str:
        """``ops.pub (sha256:1a2b3c4d5e6f)``."""
        return f"{self.name} ({self.fingerprint[:19]})"

    @classmethod
    def from_pem(cls, pem: bytes, name: str) -> TrustedKey:
        key = load_public_key(pem)
        return cls(name, key, fingerprint(key))


@dataclass(frozen=True)
class TrustPolicy:
    """The keys whose signatures are trusted, and whether a module needs one."""

    keys: tuple[TrustedKey, ...] = ()
    require: bool = False
    #: Where the policy comes from, for messages.
    origin: str = "plugins.trust"

    @classmethod
    def from_config(cls, cfg: TrustConfigLike | None, base: Path | None = None
                    ) -> TrustPolicy:
        """The policy ``plugins.trust`` describes: each key is a PEM file (relative to
        ``base``, the app folder; the config loader resolves them already) or PEM text.
        ConfigError names an unreadable key."""
        if cfg is None:
            return cls()
        return cls.from_keys(cfg.keys, require=cfg.require, base=base)

    @classmethod
    def from_keys(cls, entries: Iterable[str | Path], *, require: bool = False,
                  base: Path | None = None, origin: str = "plugins.trust") -> TrustPolicy:
        keys: list[TrustedKey] = []
        for n, entry in enumerate(entries, 1):
            text = str(entry)
            if "-----BEGIN" in text:
                pem, name = text.encode(), f"key {n}"
            else:
                path = Path(text).expanduser()
                if base is not None and not path.is_absolute():
                    path = base / path
                try:
                    pem = path.read_bytes()
                except OSError as exc:
                    raise ConfigError(f"plugins.trust.keys: cannot read the key file {path} "
                                      f"({exc.strerror})", key="plugins.trust.keys",
                                      value=text) from None
                name = path.name
            try:
                keys.append(TrustedKey.from_pem(pem, name))
            except ValueError as exc:
                raise ConfigError(f"plugins.trust.keys: {name} is not a usable public key "
                                  f"({exc})", key="plugins.trust.keys", value=name) from None
        if require and not keys:
            raise ConfigError("plugins.trust.require is on but plugins.trust.keys holds no key:"
                              " every module would be refused; add the public key its signer "
                              "uses (omnicore plugins keygen writes one)",
                              key="plugins.trust.require", value=True)
        return cls(tuple(keys), require, origin)

    @property
    def active(self) -> bool:
        """Whether there is anything to check."""
        return bool(self.keys) or self.require

    def describe(self) -> str:
        return ", ".join(k.label for k in self.keys) or "none"


@dataclass(frozen=True)
class Verdict:
    """What :func:`verify` found: the trusted key that signed the module (None: no trusted
    signature, which only a policy without ``require`` lets through) and why."""

    digest: str
    key: TrustedKey | None
    reason: str

    @property
    def trusted(self) -> bool:
        return self.key is not None


def verify(digest: str, signatures: Sequence[BlobSignature | OciSignature],
           policy: TrustPolicy, *, plugin: str | None = None) -> Verdict:
    """Check ``signatures`` of the module whose sha256 is ``digest`` (``sha256:<hex>``)
    against ``policy``: the first one a trusted key verifies wins. Under ``require`` a module
    without one raises :class:`SignatureRefused` (one line: the digest, the key); without
    ``require`` the verdict says what was found and nothing is refused."""
    if not policy.active:
        return Verdict(digest, None, "no trust policy")
    raw = bytes.fromhex(digest.removeprefix("sha256:")) if digest.startswith("sha256:") \
        else b""
    problems: list[str] = []
    hints: list[str] = []
    for sig in signatures:
        if sig.key_hint:
            hints.append(sig.key_hint)
        if isinstance(sig, OciSignature):
            link = _link(sig, digest)
            if link:
                problems.append(link)
                continue
            for key in policy.keys:
                if verify_signature(key.key, sig.signature, sig.payload):
                    return Verdict(digest, key, f"signed by {key.label}")
        else:
            for key in policy.keys:
                if len(raw) == 32 and verify_prehashed(key.key, sig.signature, raw):
                    return Verdict(digest, key, f"signed by {key.label}")
    reason = _why(signatures, policy, problems, hints)
    if policy.require:
        who = f"plugin '{plugin}' " if plugin else ""
        raise SignatureRefused(f"refused {who}module {digest}: {reason}; {policy.origin} "
                               "requires a trusted signature", plugin=plugin, digest=digest,
                               keys=tuple(hints))
    return Verdict(digest, None, reason)


def _link(sig: OciSignature, digest: str) -> str:
    """Why an OCI signature does not speak for the module ``digest`` ('' when it does)."""
    try:
        named = payload_digest(sig.payload)
    except ValueError as exc:
        return f"a signature's payload is {exc}"[:200]
    carried = "sha256:" + hashlib.sha256(sig.manifest).hexdigest()
    if named != carried:
        return f"a signature names the artifact {named[:19]}, not {carried[:19]}"
    try:
        layer = read_manifest(sig.manifest).layer.digest
    except ValueError as exc:
        return f"the signed artifact is not a Wasm artifact ({exc})"
    if layer != digest:
        return f"a signature is of another module ({layer[:19]}, in artifact {named[:19]})"
    return ""


def _why(signatures: Sequence[BlobSignature | OciSignature], policy: TrustPolicy,
         problems: list[str], hints: list[str]) -> str:
    trusted = f"trusted: {policy.describe()}"
    if not signatures:
        return f"it is not signed ({trusted})"
    known = {k.fingerprint: k for k in policy.keys}
    by_known = [known[h] for h in hints if h in known]
    unknown = [h for h in hints if h not in known]
    if problems and len(problems) == len(signatures):
        return f"{problems[0]} ({trusted})"
    if by_known:
        return (f"its signature by {by_known[0].label} does not verify: the module, its "
                "artifact or the signature was altered")
    if unknown:
        return f"it is signed by key {unknown[0][:23]}, which is not trusted ({trusted})"
    count = len(signatures)
    lead = "its signature does not verify" if count == 1 else \
        f"none of its {count} signatures verifies"
    return f"{lead} with a trusted key: signed by another key, or altered ({trusted})"
