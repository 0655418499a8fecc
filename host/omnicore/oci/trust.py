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

:func:`verify_sidecar` is the second half of the same check: the sidecar a version carries
(its config, limits, ``enabled``, MCP exposure, requested grants) is applied under the
signer's name only when a trusted key covers it too — it is the sidecar annotation of the
signed manifest, or its own file was signed for this module and this plugin name
(:class:`~omnicore.oci.signing.SidecarSignature`, :func:`~omnicore.oci.signing.
sidecar_statement`) — or it claims nothing (empty); else only an explicit override the host's own
``plugins.trust.allow_unsigned_sidecar`` admits (:class:`Waiver`). :func:`check_version` runs
both on what a catalog version stores, at publish and at every host's load.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from omnicore.errors import ConfigError
from omnicore.oci.artifact import read_manifest
from omnicore.oci.errors import SignatureRefused
from omnicore.oci.signing import (
    BlobSignature,
    OciSignature,
    PublicKey,
    SidecarSignature,
    fingerprint,
    load_public_key,
    payload_digest,
    sidecar_signature_from_json,
    sidecar_statement,
    signature_from_json,
    verify_prehashed,
    verify_signature,
)

__all__ = ["Stored", "TrustConfigLike", "TrustPolicy", "TrustedKey", "Verdict", "Waiver",
           "check_version", "parse_sidecar_text", "sidecar_json", "verify", "verify_sidecar"]


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
    #: ``plugins.trust.allow_unsigned_sidecar``: whether an explicit override
    #: (``--unsigned-sidecar REASON``) lets a sidecar no trusted key covers through.
    unsigned_sidecars: bool = False

    @classmethod
    def from_config(cls, cfg: TrustConfigLike | None, base: Path | None = None
                    ) -> TrustPolicy:
        """The policy ``plugins.trust`` describes: each key is a PEM file (relative to
        ``base``, the app folder; the config loader resolves them already) or PEM text.
        ConfigError names an unreadable key."""
        if cfg is None:
            return cls()
        return cls.from_keys(cfg.keys, require=cfg.require, base=base,
                             unsigned_sidecars=bool(getattr(cfg, "allow_unsigned_sidecar",
                                                            False)))

    @classmethod
    def from_keys(cls, entries: Iterable[str | Path], *, require: bool = False,
                  base: Path | None = None, origin: str = "plugins.trust",
                  unsigned_sidecars: bool = False) -> TrustPolicy:
        keys: list[TrustedKey] = []
        for n, entry in enumerate(entries, 1):
            text = str(entry)
            if "-----BEGIN" in text:
                pem, name = text.encode(), f"key {n}"
                where = name
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
                name, where = path.name, str(path)  # the path read, as the operator must fix it
            try:
                keys.append(TrustedKey.from_pem(pem, name))
            except ValueError as exc:
                raise ConfigError(f"plugins.trust.keys: {where} is not a usable public key "
                                  f"({exc})", key="plugins.trust.keys", value=name) from None
        if require and not keys:
            raise ConfigError("plugins.trust.require is on but plugins.trust.keys holds no key:"
                              " every module would be refused; add the public key its signer "
                              "uses (omnicore plugins keygen writes one)",
                              key="plugins.trust.require", value=True)
        return cls(tuple(keys), require, origin, unsigned_sidecars)

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


# ---- the sidecar -------------------------------------------------------------------------

@dataclass(frozen=True)
class Waiver:
    """An operator's explicit override: this version's sidecar is applied although no trusted
    key covers it (``--unsigned-sidecar REASON``). Kept with the version; a host honours it
    only under its own ``plugins.trust.allow_unsigned_sidecar``."""

    reason: str
    by: str = ""

    def to_json(self) -> dict[str, str]:
        return {"kind": "unsigned-sidecar", "reason": self.reason, "by": self.by}


@dataclass(frozen=True)
class Stored:
    """What a catalog version keeps in its ``signatures`` (JSON), read back by kind; a form
    not read is no signature."""

    signatures: tuple[BlobSignature | OciSignature, ...] = ()
    sidecar_signatures: tuple[SidecarSignature, ...] = ()
    waiver: Waiver | None = None

    @classmethod
    def from_json(cls, docs: Iterable[Mapping[str, Any]]) -> Stored:
        signatures: list[BlobSignature | OciSignature] = []
        sidecars: list[SidecarSignature] = []
        waiver = None
        for doc in docs:
            kind = doc.get("kind") if isinstance(doc, Mapping) else None
            try:
                if kind == "cosign-sidecar":
                    sidecars.append(sidecar_signature_from_json(doc))
                elif kind == "unsigned-sidecar":
                    # Read from the table, which any writer of it fills: a host's messages
                    # and logs get it clipped and printable (a publish refuses worse).
                    waiver = Waiver(_printable(doc.get("reason"), 300),
                                    _printable(doc.get("by"), 100))
                else:
                    signatures.append(signature_from_json(doc))
            except (ValueError, TypeError, AttributeError):
                continue
        return cls(tuple(signatures), tuple(sidecars), waiver)


def _printable(value: object, most: int) -> str:
    """``value`` as one printable line of at most ``most`` characters (others as ``?``)."""
    text = " ".join(str(value or "").split())[:most]
    return "".join(c if c.isprintable() else "?" for c in text)


def sidecar_json(sidecar: Mapping[str, Any] | None) -> str:
    """A sidecar's canonical JSON (sorted keys, no spaces): what "the same sidecar" compares."""
    return json.dumps(dict(sidecar or {}), sort_keys=True, separators=(",", ":"))


_UNREAD = object()
#: The most nodes a signed sidecar's YAML may stand for once its aliases are followed: far
#: above what 64 KiB of text holds without them, far below an alias bomb's billions.
MAX_YAML_NODES = 100_000


def _yaml(text: str) -> Any:
    """``text`` as YAML through the one door (a key stated twice refused), or ``_UNREAD``.
    Its node graph is walked first with the aliases followed, counting: a few hundred bytes
    of nested aliases stand for billions of nodes, which loading then copying to JSON built
    (every host parses a signed sidecar text at each load and trust reload)."""
    import yaml

    from omnicore import yamlfile

    try:
        root = yamlfile.compose(text, "the signed sidecar")
        stack = [root] if root is not None else []
        seen = 0
        while stack:
            node = stack.pop()
            seen += 1
            if seen > MAX_YAML_NODES:
                return _UNREAD
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    stack += (key, value)
            elif isinstance(node, yaml.SequenceNode):
                stack.extend(node.value)
        return yamlfile.load(text, "the signed sidecar")
    except yaml.YAMLError:
        return _UNREAD


def parse_sidecar_text(text: bytes) -> dict[str, Any] | None:
    """A signed sidecar file's bytes as data: TOML, else YAML (JSON is YAML); None when they
    are neither, or not a mapping at the top."""
    import tomllib

    try:
        decoded = text.decode("utf-8")
    except UnicodeDecodeError:
        return None
    doc: Any
    try:
        doc = tomllib.loads(decoded)
    except tomllib.TOMLDecodeError:
        doc = _yaml(decoded)
        if doc is _UNREAD:
            return None
    else:
        # A text that is TOML and a YAML mapping at once (`config = "mode: admin"` is TOML
        # {config: ...} and YAML {'config = "mode': ...}) has two readings: the signer
        # reviewed one, a publisher could apply the other. Such a text covers neither.
        other = _yaml(decoded)
        if isinstance(other, dict) and other and other != doc:
            return None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        return None
    try:
        parsed: dict[str, Any] = json.loads(json.dumps(doc))  # as the catalog stores it
    except (TypeError, ValueError):
        return None
    return parsed


def verify_sidecar(digest: str, sidecar: Mapping[str, Any] | None,
                   signatures: Sequence[BlobSignature | OciSignature], policy: TrustPolicy,
                   *, sidecar_signatures: Sequence[SidecarSignature] = (),
                   waiver: Waiver | None = None, plugin: str | None = None) -> str:
    """What covers ``sidecar``, the sidecar applied with the module ``digest`` (one phrase for
    answers and the audit log). Covered: no policy is active; the sidecar is empty (it claims
    nothing), unless a trusted key signed an artifact of this module with a sidecar; a
    trusted key signed a manifest whose one layer is this module and whose
    sidecar annotation is this sidecar; or a trusted key signed the statement binding a
    sidecar file that parses to it to ``digest`` and ``plugin`` (no ``plugin``: none binds).
    Else the ``waiver`` under ``policy.unsigned_sidecars``; else, under ``require``,
    :class:`SignatureRefused` (one line: the module's digest, what differs, what to do)."""
    if not policy.active:
        return "no trust policy"
    wanted = sidecar_json(sidecar)
    differs = None
    for sig in signatures:
        if not isinstance(sig, OciSignature) or _link(sig, digest):
            continue
        key = next((k for k in policy.keys
                    if verify_signature(k.key, sig.signature, sig.payload)), None)
        if key is None:
            continue
        try:
            signed = read_manifest(sig.manifest).sidecar
        except ValueError:
            continue
        if sidecar_json(signed) == wanted:
            return "empty (it claims nothing)" if wanted == "{}" else \
                f"the signed artifact's own (signed by {key.label})"
        differs = key
    # Empty claims nothing only where no signed artifact of this module says otherwise: an
    # empty sidecar in place of the signed manifest's own drops what the signer set
    # (enabled: false, its limits, its config) for the host's defaults, a substitution as
    # much as an added sidecar.
    if wanted == "{}" and differs is None:
        return "empty (it claims nothing)"
    # A sidecar file's signature signs a statement binding its bytes to this module and
    # this plugin name (signing.sidecar_statement), rebuilt here from the version applied:
    # one signed for another plugin or module verifies against no statement of this one.
    # A signature of the bytes alone (the older form) binds neither, so it covers nothing:
    # replayed onto any module, a trusted key's permissive sidecar (a long timeout, its
    # config, MCP exposure) would apply to code the signer never saw.
    unbound = None
    for ssig in sidecar_signatures:
        parsed = parse_sidecar_text(ssig.text)
        if parsed is None or sidecar_json(parsed) != wanted:
            continue
        statement = sidecar_statement(digest, plugin, ssig.text) if plugin else b""
        key = next((k for k in policy.keys if statement
                    and verify_signature(k.key, ssig.signature, statement)), None)
        if key is not None:
            return f"its file signed by {key.label} for this module and name"
        unbound = unbound or next(
            (k for k in policy.keys if verify_signature(k.key, ssig.signature, ssig.text)),
            None)
    # Unsigned, and why: applied by the override or where signatures are not required,
    # else refused with what the operator can do (the older form's why says it).
    if unbound is not None:
        why = (f"its file's signature by {unbound.label} does not bind this module and plugin "
               "name (the older form, over the file alone): sign it again with `omnicore "
               "plugins sign SIDECAR --module MODULE --name NAME`")
        need = "signed for this module"
    else:
        if differs is not None and wanted == "{}":
            why = (f"it drops the sidecar of the artifact {differs.label} signed (empty in "
                   "place of the signed one)")
        elif differs is not None:
            why = f"it is not the sidecar of the artifact {differs.label} signed"
        elif sidecar_signatures:
            why = ("its signature does not verify with a trusted key for this module and "
                   "plugin name (another key, a signature made for another plugin or module, "
                   "or of another sidecar)")
        else:
            why = "no trusted key signed it"
        need = "signed too; " + (
            "the override given is refused: this host's plugins.trust.allow_unsigned_sidecar "
            "is off" if waiver is not None else
            "publish the artifact with its own sidecar (no --sidecar), sign the sidecar file "
            "(cosign sign-blob: SIDECAR.sig beside it), or, where plugins.trust."
            "allow_unsigned_sidecar is on, --unsigned-sidecar REASON")
    if waiver is not None and policy.unsigned_sidecars:
        return f"unsigned ({why}), applied by override: {waiver.reason}"
    if not policy.require:
        return f"unsigned ({why})"
    who = f"plugin '{plugin}' " if plugin else ""
    raise SignatureRefused(f"refused {who}module {digest} with its sidecar: {why}; "
                           f"{policy.origin} requires the config, limits, enabled and mcp it "
                           f"applies to be {need}", plugin=plugin, digest=digest, keys=())


def check_version(digest: str, sidecar: Mapping[str, Any] | None,
                  stored: Iterable[Mapping[str, Any]], policy: TrustPolicy, *,
                  plugin: str | None = None) -> tuple[Verdict, str]:
    """A catalog version as a host is about to apply it: the module's signatures
    (:func:`verify`) and its sidecar's cover (:func:`verify_sidecar`) from what the version
    keeps (``stored``: its ``signatures`` JSON). Raises SignatureRefused under ``require``,
    and whatever the policy for a version whose stored form is not the shape a publish
    writes."""
    # A writer of the catalog table can leave valid JSON of another shape (signatures
    # `null` or `7`, a sidecar `"config"`). Anything but SignatureRefused escaping here
    # stopped a host's start (and its following of every other name) at that one row:
    # such a version is refused by name, and the others are followed.
    if sidecar is not None and not isinstance(sidecar, Mapping):
        who = f"plugin '{plugin}' " if plugin else ""
        raise SignatureRefused(f"refused {who}module {digest}: the version's stored sidecar "
                               f"is a JSON {type(sidecar).__name__}, not an object (written "
                               "into the catalog table by hand?)", plugin=plugin,
                               digest=digest, keys=())
    if not isinstance(stored, list | tuple):
        stored = ()
    found = Stored.from_json(stored)
    verdict = verify(digest, found.signatures, policy, plugin=plugin)
    cover = verify_sidecar(digest, sidecar, found.signatures, policy,
                           sidecar_signatures=found.sidecar_signatures, waiver=found.waiver,
                           plugin=plugin)
    return verdict, cover
