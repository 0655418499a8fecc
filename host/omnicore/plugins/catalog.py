"""The plugin catalog as an operator uses it: publish a module, list versions, roll back, remove.

One catalog per app, in the app's store (:class:`~omnicore.storage.catalog_rows.CatalogRows`:
SQLite alone, PostgreSQL for a cluster), so a plugin published once is loaded by every host
of the database (:mod:`omnicore.plugins.convergence`), over each host's own plugin folder
(:mod:`omnicore.plugins.published`). Modules are content-addressed: a digest
(``sha256:<hex>``) names the bytes, a version names a publish (its number, digest, sidecar,
who and when), and each name has one version in force.

What a publish is checked for before anything is stored, so a host never meets a module it
will refuse for a reason the publisher could have been told: the size cap
(``catalog.max_module_bytes``), the digest the publisher announced (a truncated or altered
upload), the bytes being a plugin this host can compile (the same door a load goes through),
a name a host can hold, and the sidecar being one a host would read. The sidecar's grants are
requests (specs/catalog.md): publishing never grants a capability.

Under ``plugins.trust`` the signatures are checked first, the module's and then the
sidecar's (:func:`omnicore.oci.trust.verify_sidecar`: the signed artifact's own sidecar, a
sidecar file a trusted key signed, or an audited override the policy admits); every host
checks both again before it applies the version. A publish of a module the plugin had before
the one in force (an earlier build published again) is **older**: :class:`Publication` says
so, and ``catalog.refuse_older`` refuses it.

A name may be pinned to one of its versions (:meth:`Catalog.pin`): every host serves that
version whatever is published later (a publish adds a version, not in force), and a rollback
or a removal is refused, until :meth:`Catalog.unpin` puts the newest version in force.

Errors (drawn in :mod:`omnicore.errors`)::

    BadPublish       the catalog will not take it: the module, digest, name or sidecar
    ├── ModuleTooLarge   over catalog.max_module_bytes
    └── OlderModule      older than the version in force, under catalog.refuse_older
    VersionPinned    a rollback or removal of a pinned name (a PluginError)
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnicore.config.schema import CatalogConfig, TrustConfig
from omnicore.errors import ConfigError, PluginError, PluginLoadError, PluginNotFound
from omnicore.plugins.published import published_sidecar
from omnicore.sandbox.compiled import CompiledPlugin
from omnicore.storage.base import Storage
from omnicore.storage.catalog_rows import (
    CHUNK_BYTES,
    CatalogEntry,
    CatalogRows,
    Pinned,
    PluginVersion,
    full_digest,
)
from omnicore.storage.instance_rows import Instance

if TYPE_CHECKING:
    from omnicore.oci.signing import BlobSignature, OciSignature, SidecarSignature
    from omnicore.oci.trust import TrustPolicy

__all__ = [
    "DIGEST",
    "NAME",
    "BadPublish",
    "Catalog",
    "ModuleTooLarge",
    "OlderModule",
    "Publication",
    "VersionPinned",
    "app_catalog",
    "digest_of",
    "live_hosts",
    "reach_line",
    "short",
]

#: A name the catalog holds: what the plugin folder takes as a file name, without ``.wasm``.
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
#: A full digest as the catalog writes it.
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
#: The longest ``--unsigned-sidecar`` reason a publish takes (after its whitespace is folded).
MAX_REASON = 300

#: ``check(module, name)``: the module compiled and checked as a host loads it (raises
#: PluginLoadError saying why not); ``name`` overrides the manifest's.
Check = Callable[[bytes, str | None], CompiledPlugin]


class BadPublish(PluginLoadError):
    """The catalog will not take a module: its digest is not the one announced, the bytes are
    empty, the name is not one a host can hold, or its sidecar would be refused."""


class ModuleTooLarge(BadPublish):
    """The module is over ``catalog.max_module_bytes``."""


class OlderModule(BadPublish):
    """The module is older than the one in force and ``catalog.refuse_older`` is on."""


@dataclass(frozen=True)
class Publication:
    """What a publish did: the version and whether it is new, the kept version of the same
    module published before the one in force (None: not older), and what covers the sidecar
    (:func:`omnicore.oci.trust.verify_sidecar`'s phrase; ``override`` the reason when an
    override applies it)."""

    version: PluginVersion
    made: bool
    older: PluginVersion | None = None
    in_force: PluginVersion | None = None
    sidecar: str = ""
    override: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The answer's additions (the REST API's and ``--json``'s)."""
        doc: dict[str, Any] = {"sidecar_cover": self.sidecar}
        if self.older is not None and self.in_force is not None:
            doc["older"] = {"seen_as": self.older.number, "published_at":
                            self.older.published_at, "in_force": self.in_force.digest,
                            "in_force_number": self.in_force.number}
        if self.override is not None:
            doc["unsigned_sidecar"] = self.override
        return doc

    def audit(self) -> dict[str, Any]:
        """The publish's audit entry (``catalog.publish``'s after)."""
        v = self.version
        doc: dict[str, Any] = {"version": v.number, "digest": v.digest, "size": v.size,
                               "source": v.source, "sidecar": self.sidecar}
        if self.older is not None and self.in_force is not None:
            doc["older_than_in_force"] = {"seen_as": f"v{self.older.number}",
                                          "in_force": f"v{self.in_force.number} "
                                                      f"{self.in_force.digest}"}
        if self.override is not None:
            doc["unsigned_sidecar"] = self.override
        return doc

    def older_line(self) -> str | None:
        """One line saying the module is older (None: it is not)."""
        if self.older is None or self.in_force is None:
            return None
        return (f"{self.version.name}: this module ({short(self.version.digest)}) is older "
                f"than the one in force (v{self.in_force.number}, "
                f"{short(self.in_force.digest)}): it was published before as "
                f"v{self.older.number}; catalog.refuse_older: true refuses such a publish")


class VersionPinned(PluginError):
    """A rollback or a removal of a name pinned to a version: unpin it first."""


def digest_of(data: bytes) -> str:
    """``sha256:<hex>`` of ``data``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def short(digest: str) -> str:
    """``sha256:1a2b3c4d5e6f`` (12 hex digits): how lists and messages show a digest."""
    return digest[:19]


def chunks(data: bytes) -> Iterator[bytes]:
    """``data`` in :data:`~omnicore.storage.catalog_rows.CHUNK_BYTES` pieces (views, no copy
    of the whole)."""
    view = memoryview(data)
    for start in range(0, len(view), CHUNK_BYTES):
        yield bytes(view[start:start + CHUNK_BYTES])


class Catalog:
    """The catalog of one app's store, for operators (the console, the REST API, the CLI).

    ``rows`` gives the store (opened on first use); ``check`` compiles a module as the host
    would; ``max_bytes`` and ``keep`` are ``catalog.max_module_bytes`` and
    ``catalog.keep_versions``; ``policy`` is the publisher's ``plugins.trust`` (each host
    checks the signatures again against its own at load).
    """

    def __init__(self, rows: Callable[[], CatalogRows], *, check: Check, max_bytes: int,
                 keep: int, policy: TrustPolicy | None = None,
                 trust: TrustConfig | None = None, refuse_older: bool = False) -> None:
        self._rows = rows
        self._check = check
        self.max_bytes = max_bytes
        self._keep = keep
        self._policy = policy
        self._trust = trust
        #: ``catalog.refuse_older``.
        self.refuse_older = refuse_older

    @property
    def policy(self) -> TrustPolicy:
        """``policy``, or the one ``plugins.trust`` (``trust``) says, made at the first
        publish: cryptography loads only where plugins are published, never for a call."""
        if self._policy is None:
            from omnicore.oci.trust import TrustPolicy

            self._policy = TrustPolicy.from_config(self._trust)
        return self._policy

    @policy.setter
    def policy(self, policy: TrustPolicy) -> None:
        self._policy = policy

    # ---- publishing ------------------------------------------------------------------

    def publish(self, module: bytes, *, name: str | None = None,
                sidecar: Mapping[str, Any] | None = None, digest: str | None = None,
                by: str | None = None, source: str | None = None,
                signatures: Sequence[BlobSignature | OciSignature] = (),
                sidecar_signatures: Sequence[SidecarSignature] = (),
                unsigned_sidecar: str | None = None) -> tuple[PluginVersion, bool]:
        """:meth:`publication`'s version and whether it is new."""
        done = self.publication(module, name=name, sidecar=sidecar, digest=digest, by=by,
                                source=source, signatures=signatures,
                                sidecar_signatures=sidecar_signatures,
                                unsigned_sidecar=unsigned_sidecar)
        return done.version, done.made

    def publication(self, module: bytes, *, name: str | None = None,
                    sidecar: Mapping[str, Any] | None = None, digest: str | None = None,
                    by: str | None = None, source: str | None = None,
                    signatures: Sequence[BlobSignature | OciSignature] = (),
                    sidecar_signatures: Sequence[SidecarSignature] = (),
                    unsigned_sidecar: str | None = None) -> Publication:
        """Store ``module`` (with ``sidecar`` and ``signatures``) as the version of ``name``
        (default: the name its manifest gives) in force, ``source`` (an OCI reference) saying
        where it came from; what was done (:class:`Publication`: made False when that module,
        sidecar and signatures were in force already). ``sidecar_signatures`` sign the
        sidecar's file; ``unsigned_sidecar`` is an operator's reason to apply a sidecar no
        trusted key covers (kept with the version; refused unless
        ``plugins.trust.allow_unsigned_sidecar``). Raises :class:`BadPublish` (or
        :class:`ModuleTooLarge`, :class:`OlderModule`), SignatureRefused (under
        ``plugins.trust.require``: no trusted signature of the module, or of its sidecar) and
        the compile errors of a load (InvalidModule...), before anything is stored."""
        size = len(module)
        label = name or "the module"
        if size > self.max_bytes:
            raise ModuleTooLarge(f"cannot publish {label}: it is {size} bytes and the catalog "
                                 f"takes at most {self.max_bytes} (catalog.max_module_bytes)",
                                 plugin=name)
        if not size:
            raise BadPublish(f"cannot publish {label}: the module is empty", plugin=name)
        actual = digest_of(module)
        if digest is not None and full_digest(digest) != actual:
            raise BadPublish(f"cannot publish {label}: the upload's digest is {short(actual)}"
                                 f" ({size} bytes), not the {digest[:80]!r} announced; it was "
                                 "cut short or altered on the way, so send it again",
                                 plugin=name)
        if name is not None:
            _check_name(name)
        reason = None if unsigned_sidecar is None else " ".join(unsigned_sidecar.split())
        if reason is not None and not reason:
            raise BadPublish(f"cannot publish {label}: --unsigned-sidecar needs the reason "
                             "the audit log keeps", plugin=name)
        # The reason is printed by the CLI, shown in the console and kept in the audit log
        # and the table: a line a person reads, not a payload (a megabyte of it, or terminal
        # escapes, NULs and bidi overrides that rewrite what the reader sees).
        if reason is not None and (len(reason) > MAX_REASON or not reason.isprintable()):
            raise BadPublish(f"cannot publish {label}: the --unsigned-sidecar reason must be "
                             f"one printable line of at most {MAX_REASON} characters (it "
                             f"has {len(reason)}"
                             f"{'' if reason.isprintable() else ', control characters'})",
                             plugin=name)
        # The signatures before the compile: an untrusted module is not even compiled.
        from omnicore.oci.signing import (
            MAX_SIDECAR_TEXT,
            sidecar_signature_to_json,
            signature_to_json,
        )
        from omnicore.oci.trust import Waiver, check_version, verify, verify_sidecar

        policy = self.policy
        verify(actual, list(signatures), policy, plugin=name)
        compiled = self._check(module, name)
        name = name or compiled.name
        _check_name(name)
        doc = _sidecar_doc(sidecar, name)
        waiver = Waiver(reason, by or "") if reason is not None else None
        cover = verify_sidecar(actual, doc, list(signatures), policy,
                               sidecar_signatures=list(sidecar_signatures), waiver=waiver,
                               plugin=name)
        override = reason if waiver is not None and "by override" in cover else None
        kept_json = [signature_to_json(s) for s in signatures] + \
            [sidecar_signature_to_json(s) for s in sidecar_signatures]
        if override is not None and waiver is not None:
            kept_json.append(waiver.to_json())
        # What a host checks is the stored form (trust.check_version), not these objects:
        # a sidecar text over MAX_SIDECAR_TEXT verified here but was dropped by every host
        # reading it back, so each refused a version the publish had accepted. Say it now,
        # and hold the stored form to the host's check before anything is stored.
        too_big = [len(s.text) for s in sidecar_signatures if len(s.text) > MAX_SIDECAR_TEXT]
        if too_big:
            raise BadPublish(f"cannot publish plugin '{name}': its signed sidecar file is "
                             f"{too_big[0]} bytes, over the {MAX_SIDECAR_TEXT} a host reads "
                             "back with the version", plugin=name)
        check_version(actual, doc, kept_json, policy, plugin=name)
        rows = self._rows()
        older, in_force = _older(rows, name, actual)
        if older is not None and in_force is not None and self.refuse_older:
            raise OlderModule(f"cannot publish plugin '{name}': its module {short(actual)} is "
                              f"older than the one in force (v{in_force.number}, "
                              f"{short(in_force.digest)}): it was published as "
                              f"v{older.number} before; catalog.refuse_older is on (roll back "
                              f"with `omnicore plugins rollback {name} v{older.number}` if "
                              "that is what you mean)", plugin=name)
        version, made = rows.publish(name, actual, size, chunks(module), doc, by=by,
                                     at=time.time(), keep=self._keep, source=source,
                                     signatures=kept_json)
        return Publication(version, made, older if made else None,
                           in_force if made else None, cover, override)

    # ---- reading ---------------------------------------------------------------------

    def entries(self) -> list[CatalogEntry]:
        """Every plugin in force, by name."""
        return self._rows().entries()

    def entry(self, name: str) -> CatalogEntry:
        """``name``'s entry; PluginNotFound when it was never published."""
        found = self._rows().entry(name)
        if found is None:
            raise self._unknown(name)
        return found

    def versions(self, name: str) -> list[PluginVersion]:
        """``name``'s versions kept, newest first; PluginNotFound when it has none."""
        found = self._rows().versions(name)
        if not found:
            raise self._unknown(name)
        return found

    # ---- rollback and removal --------------------------------------------------------

    def rollback(self, name: str, to: str | None = None, *,
                 by: str | None = None) -> CatalogEntry:
        """Put an earlier version of ``name`` in force: the one ``to`` names (a digest, a
        unique prefix of one, or a version number as ``3`` or ``v3``), else the newest one
        published before the version in force."""
        rows = self._rows()
        versions = self.versions(name)
        entry = rows.entry(name)
        if entry is not None and entry.pinned:
            raise _pinned(entry, "roll it back")  # (the store checks again as it changes)
        current = entry.version if entry is not None else None
        if to is None:
            older = [v for v in versions if current is None or v.id < current.id]
            if not older:
                raise PluginError(f"plugin '{name}' has no version before "
                                  f"{_named(current)} in the catalog to roll back to; "
                                  f"name one: omnicore plugins versions {name}", plugin=name)
            target = older[0]
        else:
            target = _pick(name, versions, to)
        try:
            return rows.point(name, target.id, by=by, at=time.time())
        except Pinned as exc:
            raise _pinned(exc.entry, "roll it back") from None

    def remove(self, name: str, *, by: str | None = None) -> CatalogEntry | None:
        """Take ``name`` out of the catalog (its versions stay, for a rollback): every host
        falls back to its own folder's file of that name, or unloads it. None when it was
        not in force."""
        if self._rows().entry(name) is None:
            raise self._unknown(name)
        try:
            return self._rows().remove(name, by=by, at=time.time())
        except Pinned as exc:
            raise _pinned(exc.entry, "remove it") from None

    # ---- pinning ---------------------------------------------------------------------

    def pin(self, name: str, digest: str, *, by: str | None = None) -> CatalogEntry:
        """Pin ``name`` to the version ``digest`` names (a full digest, a prefix of 6 or more
        hex digits, or ``vN``): it goes in force on every host and stays there whatever is
        published later, until :meth:`unpin`. PluginNotFound names a digest the name has no
        version of (and the plugin it is a version of, if any), BadPublish one that is not a
        digest."""
        versions = self.versions(name)
        text = digest.strip().lower()
        if not text.removeprefix("v").isdecimal():
            hexpart = full_digest(text).removeprefix("sha256:")
            if not re.fullmatch(r"[0-9a-f]{6,64}", hexpart):
                raise BadPublish(f"cannot pin '{name}' to {digest[:80]!r}: that is not a "
                                 "digest (sha256:<hex>, 6 to 64 hex digits) or a version "
                                 "number (vN)", plugin=name)
            if not any(v.digest.startswith(full_digest(text)) for v in versions):
                others = [n for n in self._rows().names_of(full_digest(text)) if n != name]
                where = (f"; it is a version of {', '.join(repr(n) for n in others)}, not of "
                         f"'{name}'") if others else " (no plugin in the catalog has it)"
                kept = ", ".join(f"v{v.number} {short(v.digest)}" for v in versions[:10])
                raise PluginNotFound(f"cannot pin '{name}' to {digest[:80]}: '{name}' has no "
                                     f"such version{where}; its versions kept: {kept}",
                                     plugin=name)
        target = _pick(name, versions, digest)
        try:
            return self._rows().pin(name, target.id, by=by, at=time.time())
        except KeyError:  # pruned meanwhile
            raise PluginNotFound(f"cannot pin '{name}' to {short(target.digest)}: that version "
                                 "is no longer kept", plugin=name) from None

    def unpin(self, name: str, *, by: str | None = None) -> CatalogEntry:
        """Release ``name``'s pin: its newest version goes in force on every host.
        PluginError when it is not pinned."""
        self.entry(name)  # PluginNotFound for a name never published
        entry = self._rows().unpin(name, by=by, at=time.time())
        if entry is None:
            raise PluginError(f"plugin '{name}' is not pinned (pin it with `omnicore plugins "
                              f"pin {name} DIGEST`)", plugin=name)
        return entry

    @staticmethod
    def _unknown(name: str) -> PluginNotFound:
        return PluginNotFound(f"no plugin '{name}' in the catalog (publish one with "
                              f"`omnicore plugins publish FILE`)", plugin=name)


def app_catalog(storage: Callable[[], Storage], check: Check,
                options: CatalogConfig, trust: TrustConfig | None = None) -> Catalog:
    """The catalog of an app's ``storage``, held to its ``catalog.*`` options and its
    ``plugins.trust`` (``trust``); ``check`` compiles as its hosts do
    (``app.plugins.published.check_module``)."""
    return Catalog(lambda: storage().catalog, check=check, max_bytes=options.max_module_bytes,
                   keep=options.keep_versions, trust=trust, refuse_older=options.refuse_older)


def _older(rows: CatalogRows, name: str, digest: str
           ) -> tuple[PluginVersion | None, PluginVersion | None]:
    """(the newest kept version of ``name`` with the module ``digest`` published before the
    version in force, the version in force); the first is None when ``digest`` is not older:
    it is the one in force (after a removal: the newest kept), new to ``name``, or ``name``
    has no version. Only kept versions are history (``catalog.keep_versions``): a module
    pruned from it is new again."""
    entry = rows.entry(name)
    current = entry.version if entry is not None else None
    kept = rows.versions(name)
    if current is None and kept:
        # Removed: its versions stay (for a rollback), and so does what older means, else
        # `plugins remove` then a publish of the old build went round catalog.refuse_older.
        current = kept[0]
    if current is None or current.digest == digest:
        return None, current
    seen = [v for v in kept if v.digest == digest and v.id < current.id]
    return (seen[0] if seen else None), current


def live_hosts(instances: list[Instance], dead_after_s: float,
               now: float | None = None) -> int:
    """How many of ``instances`` heartbeat within ``dead_after_s`` (``cluster.dead_after_s``):
    the hosts that load a publish now; the others only when they start again."""
    now = time.time() if now is None else now
    return sum(1 for i in instances if now - i.heartbeat_at <= dead_after_s)


def reach_line(live: int | None) -> str:
    """What a publish's answer says of the hosts that will load it (``live``: running hosts
    of the store, None when not known)."""
    if live is None:
        return "every running host of the store loads it within a few seconds (see " \
               "`omnicore plugins catalog`)"
    if live == 0:
        return "no host of the store is running now: each one loads it when it starts " \
               "(`omnicore run`)"
    hosts = "1 host of the store is" if live == 1 else f"{live} hosts of the store are"
    return f"{hosts} running; each loads it within a few seconds (see `omnicore plugins " \
           "catalog`)"


def rollouts(entries: list[CatalogEntry], instances: list[Instance]) -> list[dict[str, Any]]:
    """For each plugin in force, where it stands across the hosts sharing the store (from what
    each reported on its instance row): the digest wanted, each host's digest and why it does
    not serve the wanted one, and whether every host serves it (``converged``)."""
    out = []
    for entry in entries:
        version = entry.version
        if version is None:
            continue
        hosts = []
        for instance in instances:
            report = instance.plugins.get(entry.name)
            report = report if isinstance(report, dict) else {}
            hosts.append({"runtime_id": instance.runtime_id, "hostname": instance.hostname,
                          "digest": report.get("digest"), "state": report.get("state"),
                          "error": report.get("error")})
        serving = sum(1 for h in hosts if h["digest"] == version.digest)
        out.append({"name": entry.name, "digest": version.digest, "number": version.number,
                    "pinned": entry.pinned, "serving": serving, "hosts": hosts,
                    "converged": serving == len(hosts)})
    return out


def _check_name(name: str) -> None:
    if not NAME.match(name):
        raise BadPublish(f"cannot publish plugin {name[:120]!r}: a catalog name is 1-100 "
                             "of letters, digits, '_', '.', '-', starting with a letter or "
                             "digit (name it with --name)", plugin=None)


def _sidecar_doc(sidecar: Mapping[str, Any] | None, name: str) -> dict[str, Any]:
    """The sidecar as the store keeps it (JSON), checked as a host would read it."""
    doc: dict[str, Any] = dict(sidecar or {})
    try:
        doc = dict(json.loads(json.dumps(doc)))
    except (TypeError, ValueError) as exc:
        raise BadPublish(f"cannot publish plugin '{name}': its sidecar holds a value JSON "
                             f"cannot carry ({exc})", plugin=name) from None
    try:
        published_sidecar(doc, name, 0, Path(f"{name}.wasm"))
    except ConfigError as exc:
        raise BadPublish(f"cannot publish plugin '{name}': {exc}", plugin=name) from None
    return doc


def _pick(name: str, versions: list[PluginVersion], to: str) -> PluginVersion:
    text = to.strip().lower()
    number = text.removeprefix("v")
    if number.isdecimal():
        found = [v for v in versions if v.number == int(number)]
    else:
        prefix = full_digest(text)
        if len(prefix) < len("sha256:") + 6:
            raise PluginError(f"{to!r} is too short to name a version of '{name}': give 6 or "
                              "more hex digits of its digest, or its number", plugin=name)
        found = [v for v in versions if v.digest.startswith(prefix)]
    digests = {v.digest for v in found}
    if not found:
        kept = ", ".join(f"v{v.number} {short(v.digest)}" for v in versions[:10])
        raise PluginNotFound(f"plugin '{name}' has no version {to!r} in the catalog (kept: "
                             f"{kept})", plugin=name)
    if len(digests) > 1:
        raise PluginError(f"{to!r} names several versions of '{name}' "
                          f"({', '.join(sorted(short(d) for d in digests))}): give more of the "
                          "digest", plugin=name)
    return found[0]  # the newest of that digest


def _pinned(entry: CatalogEntry, what: str) -> VersionPinned:
    held = entry.version
    pin = f"v{held.number} ({held.digest})" if held is not None else "a version"
    by = f" by {entry.pinned_by}" if entry.pinned_by else ""
    return VersionPinned(f"plugin '{entry.name}' is pinned to {pin}{by}: cannot {what}; "
                         f"unpin it first (omnicore plugins unpin {entry.name})",
                         plugin=entry.name)


def _named(version: PluginVersion | None) -> str:
    return "the first" if version is None else f"v{version.number} ({short(version.digest)})"
