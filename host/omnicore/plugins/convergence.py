"""Convergence: one host running what the plugin catalog names, and saying so.

:class:`CatalogFollower` reads the catalog's change sequence
(:class:`~omnicore.storage.catalog_rows.CatalogRows`): everything in force when it starts (a
host that was down during a publish catches up here), then every change, at once on a shared
database's NOTIFY (``Storage.on_catalog``) and by polling ``catalog.poll_s`` otherwise. For
each name in force it fetches the module into this host's catalog cache
(``<data_dir>/catalog/<hex>.wasm``) one chunk per read, checks the bytes against the digest
before the file takes its name (a module that does not match is never loaded), links it as
``<data_dir>/catalog/plugins/<name>@<number>.wasm`` beside the sidecar published with it
(without its grants: requests are no grant), so whatever reads a plugin's sidecar by its file
(its MCP tools) reads the published one, and hands it to
:class:`~omnicore.plugins.published.PublishedPlugins`, which compiles it through the engine's
digest-keyed cache and swaps it in (calls in flight finish on the old version). A name taken
out of the catalog falls back to the folder's file.

A version that cannot serve here (its fetch failed, its signatures do not satisfy this host's
``plugins.trust``, it does not compile, it lacks a grant)
leaves the version serving in place, is tried again with a growing pause (at once when the
operator's settings of the plugin change: a grant may be what it lacked), and is what this
host reports. The report (:meth:`CatalogFollower.status`) goes to this host's row of the
instance table, where any host's ``/api/v1/instances`` reads every host's digests and whether
the cluster converged.

When this host's ``plugins.trust`` changes (a config reload, :meth:`CatalogFollower.
set_policy`), the versions it serves are checked against the new policy on the follower's
thread: one no longer trusted stops serving here, with one line naming its digest and the key
(the refusal), and the newest earlier version the policy trusts serves in its place (none: the
folder's file beneath, or nothing); versions refused before are tried again at once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from omnicore.errors import ConfigError, PluginError, PluginLoadError
from omnicore.plugins.following import Following
from omnicore.plugins.info import PluginInfo
from omnicore.plugins.published import Published, PublishedPlugins, published_sidecar
from omnicore.storage.catalog_rows import CatalogEntry, CatalogRows, PluginVersion
from omnicore.storage.errors import StorageError

if TYPE_CHECKING:
    from omnicore.oci.trust import TrustPolicy

__all__ = ["CatalogFollower", "FetchFailed", "FollowedHost"]

log = logging.getLogger("omnicore.plugins.catalog")

#: The pause before a version that failed here is tried again, doubling up to the longest.
RETRY_FIRST_S = 1.0
RETRY_LONGEST_S = 60.0
#: The report is written again this often even when unchanged: a host declared dead and
#: registered again has a fresh row.
REPORT_EVERY_S = 10.0
#: A cached module no host of this cache wants is deleted once it is this old (hosts may share
#: a data dir: another one may have just fetched it).
KEEP_UNUSED_S = 600.0
#: ``report(status)``: write this host's status where the others read it; False when the
#: host's row is not there (yet), to be tried again.
Report = Callable[[Mapping[str, Any]], bool]
#: ``waived(version, cover)``: ``version`` now serves here with its sidecar applied by an
#: override (``cover``: what :func:`omnicore.oci.trust.verify_sidecar` said).
Waived = Callable[[PluginVersion, str], None]


class FetchFailed(PluginLoadError):
    """The catalog's module could not be brought here whole: gone from the store, or its
    bytes are not the digest the catalog names."""


class FollowedHost(Protocol):
    """What the follower drives: the plugin host (``app.plugins``)."""

    @property
    def published(self) -> PublishedPlugins: ...

    def __iter__(self) -> Iterator[PluginInfo]: ...


@dataclass
class _Retry:
    entry: CatalogEntry
    at: float
    pause: float


class CatalogFollower:
    """Keeps ``host``'s plugins what the catalog in ``rows`` names (see the module
    docstring); ``cache`` is the folder of fetched modules."""

    def __init__(self, rows: Callable[[], CatalogRows], host: FollowedHost, cache: Path, *,
                 poll_s: float = 1.0, report: Report | None = None,
                 policy: TrustPolicy | None = None, refuse_older: bool = False,
                 waived: Waived | None = None) -> None:
        self._rows = rows
        #: This host's ``catalog.refuse_older``: a version that puts an older module in
        #: force by its publish is not put in force here (:meth:`_older_here`).
        self.refuse_older = refuse_older
        #: Told of each version applied here under an override of its sidecar (the audit
        #: entry, once per version: :func:`omnicore.plugins.extension._follower`).
        self._waived = waived
        #: This host's ``plugins.trust``: a version's signatures are checked against it
        #: after the digest, before the module is linked or compiled.
        self._policy = policy  # (None: the default policy, made when a version is checked)
        self._host = host
        self._cache = cache
        self._report = report
        self._seq = 0
        self._lock = threading.Lock()
        #: The digest the catalog names for each name in force.
        self._wanted: dict[str, str] = {}
        #: Why the wanted version of a name does not serve here.
        self._failures: dict[str, str] = {}
        self._retry: dict[str, _Retry] = {}
        self._reported: tuple[str, float] | None = None
        self._follower = Following("plugin catalog", log, poll_s=poll_s,
                                   thread_name="omnicore-plugin-catalog")
        #: ``plugins.trust`` changed: check the versions served against it (catch_up).
        self._recheck = False

    # ---- following -------------------------------------------------------------------

    def follow(self, subscribe: Callable[[Callable[[], None]], None]) -> None:
        """Load everything the catalog has in force, then follow its changes in a thread:
        ``subscribe(wake)`` asks the storage to call ``wake`` on each change it hears of."""
        self._cache.mkdir(parents=True, exist_ok=True)
        for stale in [*self._cache.glob(".*.part"), *self._named.glob(".*")]:
            stale.unlink(missing_ok=True)  # a fetch or a link a crash cut short
        try:
            rows = self._rows()
            seq = rows.last_seq()  # first: a change made meanwhile is caught up below
            for entry in rows.entries():
                self._apply(entry)
            self._seq = seq
        except StorageError as exc:
            # The folder still loads; the thread catches up when the database answers.
            log.warning("plugin catalog: cannot read it (%s); following it once it answers",
                        exc)
            self._follower.failing = True
        self._follower.start(self.catch_up, subscribe)

    def catch_up(self) -> list[str]:
        """Apply every change since the last one seen, and the retries that are due; the
        names applied."""
        rows = self._rows()
        applied = []
        with self._lock:
            recheck, self._recheck = self._recheck, False
        if recheck:
            applied.extend(self._recheck_served(rows))
        if self._follower.failing and self._seq == 0 and not self._wanted:
            # The first read failed at start: take everything in force now.
            self._seq = rows.last_seq()
            for entry in rows.entries():
                self._apply(entry)
        while True:
            changes = rows.changes(self._seq)
            for entry in changes:
                self._apply(entry)
                applied.append(entry.name)
                self._seq = max(self._seq, entry.seq)
            if len(changes) < 1000:
                break
        now = time.monotonic()
        with self._lock:
            due = [r.entry for r in self._retry.values() if r.at <= now]
        for entry in due:
            self._apply(entry, retry=True)
            applied.append(entry.name)
        if applied:
            self._prune()
        self.publish_status(force=bool(applied))
        return applied

    def wake(self) -> None:
        """Read the catalog's changes now (this host just changed it: no poll to wait for)."""
        self._follower.wake()

    def retry(self, name: str) -> None:
        """Try a version of ``name`` that failed here again soon (the operator's settings of
        it changed: a missing grant may have been given)."""
        with self._lock:
            found = self._retry.get(name)
            if found is not None:
                found.at = 0.0
        if found is not None:
            self._follower.wake()

    def set_refuse_older(self, on: bool) -> None:
        """This host's ``catalog.refuse_older`` changed (a config reload): the versions that
        serve stay; each name whose version failed here is tried again at once (one refused
        as older serves when the setting went off)."""
        self.refuse_older = on
        with self._lock:
            names = list(self._failures)
        for name in names:
            self.retry(name)

    def set_policy(self, policy: TrustPolicy) -> None:
        """This host's ``plugins.trust`` is now ``policy`` (a config reload): the versions
        served here are checked against it on the follower's thread, at once (module
        docstring), and those it refused before are tried again."""
        with self._lock:
            self._policy = policy
            self._recheck = True
            for due in self._retry.values():
                due.at = 0.0
        self._follower.wake()

    def _recheck_served(self, rows: CatalogRows) -> list[str]:
        """Each catalog version serving here checked against the policy now; the names
        whose version was refused."""
        from omnicore.oci.errors import SignatureRefused

        published = self._host.published
        refused = []
        for name in published.names():
            p = published.served(name)
            if p is None:
                continue
            version = next((v for v in rows.versions(name) if v.digest == p.digest
                            and v.number == p.number), None)
            try:
                if version is None:
                    raise SignatureRefused(f"refused plugin '{name}' module {p.digest}: "
                                           "that version is no longer kept in the catalog, "
                                           "so its signatures cannot be checked again",
                                           plugin=name, digest=p.digest)
                self._verify(version)
            except SignatureRefused as exc:
                self._refuse_served(rows, name, p, exc)
                refused.append(name)
        return refused

    def _refuse_served(self, rows: CatalogRows, name: str, p: Published,
                       exc: Exception) -> None:
        """``p`` serves ``name`` and the policy no longer trusts it: the newest earlier
        version the policy trusts serves instead (none: the folder's file beneath, or
        nothing); one line says so."""
        published = self._host.published
        instead = None
        for older in rows.versions(name):  # newest first
            if older.number >= p.number:
                continue
            try:
                published.adopt(self._prepared(older)[0])  # checked against the policy first
            except (PluginError, ConfigError, OSError, StorageError):
                continue
            instead = older
            break
        if instead is None:
            published.withdraw(name)
            if not any(info.name == name for info in self._host):
                self._unlink(name)
        then = f"serving version {instead.number} ({instead.digest[:19]}) instead" \
            if instead is not None else "no earlier version is trusted: not served from the " \
                                       "catalog here"
        line = f"catalog version {p.number} is no longer trusted after plugins.trust " \
               f"changed: {' '.join(str(exc).split())}; {then}"
        log.warning("plugin '%s': %s", name, line)
        entry = rows.entry(name)
        if entry is not None and entry.version is not None:
            self._failed(entry, line, transient=False, quiet=True)

    def stop(self) -> None:
        """Stop following (the plugins loaded stay)."""
        self._follower.stop(10)

    # ---- one name --------------------------------------------------------------------

    def _apply(self, entry: CatalogEntry, *, retry: bool = False) -> None:
        name, version = entry.name, entry.version
        published = self._host.published
        if version is None:
            with self._lock:
                self._wanted.pop(name, None)
                self._failures.pop(name, None)
                self._retry.pop(name, None)
            published.withdraw(name)
            self._unlink(name)
            log.info("plugin '%s': removed from the catalog", name)
            return
        with self._lock:
            self._wanted[name] = version.digest
        held = published.wanted(name)
        if held is not None and held.digest == version.digest and held.number == \
                version.number and not retry and name not in self._failures:
            return  # heard twice (a reconnect, the start's read and a NOTIFY)
        try:
            why = self._older_here(entry, version) if self.refuse_older else None
            if why is not None:
                self._failed(entry, why, transient=False)
                return
            p, cover = self._prepared(version)
            published.adopt(p)
        except StorageError as exc:
            self._failed(entry, f"cannot fetch it from the store: {exc}", transient=True)
            return
        except (PluginError, ConfigError, OSError) as exc:
            self._failed(entry, str(exc), transient=isinstance(exc, FetchFailed | OSError))
            return
        with self._lock:
            self._failures.pop(name, None)
            self._retry.pop(name, None)
        log.info("plugin '%s': serving catalog version %d (%s)", name, version.number,
                 version.digest[:19])
        if "by override" in cover:
            log.warning("plugin '%s': catalog version %d's sidecar applied here by override: "
                        "%s", name, version.number, cover)
            if self._waived is not None:
                try:
                    self._waived(version, cover)
                except Exception as exc:  # the version serves: the trail missing it is said
                    log.error("plugin '%s': the override of version %d could not be "
                              "audited: %s", name, version.number, exc)

    def _older_here(self, entry: CatalogEntry, version: PluginVersion) -> str | None:
        """Why ``version`` is not put in force here under ``catalog.refuse_older`` (None: it
        may be). Older: it was put in force by its own publish (a rollback, a pin or an
        unpin is an operator's choice: its entry's time is not the version's), its module is
        not the one this host serves (none served: the version before it), and a kept
        version published before that one carries its module: what a publish through a
        host or CLI without the setting, or a table written by hand, would put in force."""
        if abs(entry.updated_at - version.published_at) > 1e-6:
            return None
        kept = self._rows().versions(version.name)
        served = self._host.published.served(version.name)
        if served is not None:
            if served.digest == version.digest or served.number >= version.number:
                return None
            ref_number, held = served.number, f"keeps serving v{served.number}"
        else:
            before = [v for v in kept if v.number < version.number]
            if not before or before[0].digest == version.digest:
                return None
            ref_number, held = before[0].number, "serves none of its versions"
        seen = [v for v in kept if v.digest == version.digest and v.number < ref_number]
        if not seen:
            return None
        return (f"its module {version.digest[:19]} is older: published as v{seen[0].number} "
                f"before v{ref_number}; this host's catalog.refuse_older is on, so it {held} "
                f"(to put it in force on purpose: `omnicore plugins rollback {version.name} "
                f"v{version.number}`)")

    def _prepared(self, version: PluginVersion) -> tuple[Published, str]:
        module = self.fetch(version.digest, version.size)
        cover = self._verify(version)
        # A file per version: the one serving keeps its own file and sidecar while a newer
        # one that cannot serve here is tried again beside it.
        path = self._named / f"{version.name}@{version.number}.wasm"
        sidecar, requested = published_sidecar(version.sidecar, version.name, version.number,
                                               path)
        self._link(module, path, {k: v for k, v in version.sidecar.items()
                                  if k not in ("grants", "grant")})
        return Published(version.name, version.digest, version.number, path, sidecar,
                         requested), cover

    def _verify(self, version: PluginVersion) -> str:
        """The version's signatures checked against this host's ``plugins.trust`` (the
        digest is the one the fetch checked the bytes against), its sidecar's too (the signed
        one, a signed file, or an override this host's policy admits: a version written
        straight into the store is held to what a publish is); SignatureRefused says why
        not. A signature the store holds in a form not read is no signature."""
        # (Imported here: cryptography and the registry client load only on a host that
        # follows a catalog, never for a plain call.)
        from omnicore.oci.trust import TrustPolicy, check_version

        return check_version(version.digest, version.sidecar, version.signatures,
                             self._policy or TrustPolicy(), plugin=version.name)[1]

    @property
    def _named(self) -> Path:
        return self._cache / "plugins"

    def _link(self, module: Path, path: Path, sidecar: Mapping[str, Any]) -> None:
        """``path`` (a name's file) made the verified ``module``, a hard link where the file
        system has them, and its sidecar ``path.yaml`` the published one (none: removed)."""
        import yaml

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.unlink(missing_ok=True)
        try:
            os.link(module, tmp)
        except OSError:
            import shutil

            shutil.copyfile(module, tmp)
        os.replace(tmp, path)
        beside = path.with_suffix(".yaml")
        if sidecar:
            text = path.with_name(f".{beside.name}.{threading.get_ident()}")
            text.write_text(yaml.safe_dump(dict(sidecar), sort_keys=True), encoding="utf-8")
            os.replace(text, beside)
        else:
            beside.unlink(missing_ok=True)

    def _unlink(self, name: str) -> None:
        for path in self._named.glob(f"{name}@*"):
            path.unlink(missing_ok=True)

    def _failed(self, entry: CatalogEntry, why: str, *, transient: bool,
                quiet: bool = False) -> None:
        with self._lock:
            self._failures[entry.name] = why
            before = self._retry.get(entry.name)
            pause = RETRY_FIRST_S if before is None or before.entry.seq != entry.seq \
                else min(before.pause * 2, RETRY_LONGEST_S)
            if not transient:
                pause = max(pause, RETRY_FIRST_S * 4)  # a compile error does not go away soon
            self._retry[entry.name] = _Retry(entry, time.monotonic() + pause, pause)
        if quiet:
            return  # said already, in one line
        log.warning("plugin '%s': catalog version %s does not serve here: %s", entry.name,
                    entry.version.number if entry.version else "?", why)

    # ---- the module file ---------------------------------------------------------------

    def fetch(self, digest: str, size: int) -> Path:
        """The verified file of module ``digest`` in the cache: from the cache when its bytes
        match, else read from the store chunk by chunk into a temporary file that takes the
        name only once its size and digest are the catalog's. FetchFailed says why not."""
        hexdigest = digest.removeprefix("sha256:")
        if len(hexdigest) != 64 or not all(c in "0123456789abcdef" for c in hexdigest):
            raise FetchFailed(f"the catalog names a malformed digest {digest[:80]!r}")
        path = self._cache / f"{hexdigest}.wasm"
        if path.is_file() and path.stat().st_size == size and _file_digest(path) == digest:
            return path
        self._cache.mkdir(parents=True, exist_ok=True)
        part = self._cache / f".{hexdigest}.{os.getpid()}.{threading.get_ident()}.part"
        hasher = hashlib.sha256()
        got = 0
        try:
            with part.open("wb") as out:
                for data in self._rows().read(digest):
                    got += len(data)
                    if got > size:
                        break  # more than the catalog announced: refused below
                    hasher.update(data)
                    out.write(data)
            actual = "sha256:" + hasher.hexdigest()
            if got != size or actual != digest:
                raise FetchFailed(f"the store's bytes for {digest[:19]} are not that module "
                                  f"({got} bytes{'+' if got > size else ''}, "
                                  f"{actual[:19]}; the catalog names {size} bytes): not "
                                  "loaded")
            os.replace(part, path)
        except (KeyError, LookupError) as exc:
            raise FetchFailed(f"module {digest[:19]} is no longer in the store ({exc}): a "
                              "newer version replaced it") from None
        finally:
            part.unlink(missing_ok=True)
        return path

    def _prune(self) -> None:
        """Delete cached modules no name wants or serves, once they are old enough."""
        with self._lock:
            keep = {d.removeprefix("sha256:") for d in self._wanted.values()}
        keep |= {info.sha256 for info in self._host if info.origin == "catalog" and
                 info.sha256}
        # A name's file is a link to its module: the module's bytes stay while it serves.
        cutoff = time.time() - KEEP_UNUSED_S
        for path in self._cache.glob("*.wasm"):
            try:
                if path.stem not in keep and path.stat().st_mtime < cutoff:
                    path.unlink()
            except OSError:
                continue
        # A name's files: the version serving it and the one wanted stay.
        published = self._host.published
        with self._lock:
            names = list(self._wanted)
        files = {Path(info.source).stem for info in self._host
                 if info.origin == "catalog" and info.source}
        files |= {p.path.stem for name in names if (p := published.wanted(name)) is not None}
        for path in self._named.glob("*@*"):
            if path.stem not in files:
                path.unlink(missing_ok=True)

    # ---- what this host runs -----------------------------------------------------------

    def status(self) -> dict[str, dict[str, Any]]:
        """This host's plugins for the instance table: each one's state, the digest it
        serves (None: none), where that came from, and for a catalog name, the digest the
        catalog wants and why that one does not serve here (``error``)."""
        with self._lock:
            wanted, failures = dict(self._wanted), dict(self._failures)
        out: dict[str, dict[str, Any]] = {}
        for info in self._host:
            serving = info.state in ("loaded", "circuit-open", "half-open")
            doc: dict[str, Any] = {
                "state": info.state, "origin": info.origin,
                "digest": f"sha256:{info.sha256}" if serving and info.sha256 else None}
            if info.name in wanted:
                doc["wanted"] = wanted[info.name]
            if info.name in failures:
                doc["error"] = failures[info.name][:500]
            elif info.last_error and not serving:
                doc["error"] = info.last_error[:500]
            out[info.name] = doc
        for name, digest in wanted.items():
            if name not in out:
                out[name] = {"state": "missing", "origin": None, "digest": None,
                             "wanted": digest, "error": failures.get(name, "")[:500] or None}
        return out

    def publish_status(self, *, force: bool = False) -> None:
        """Write :meth:`status` where the other hosts read it, when it changed (or every
        :data:`REPORT_EVERY_S`)."""
        if self._report is None:
            return
        import json

        doc = self.status()
        text = json.dumps(doc, sort_keys=True)
        now = time.monotonic()
        last = self._reported
        if not force and last is not None and last[0] == text and now - last[1] < \
                REPORT_EVERY_S:
            return
        self._reported = (text, now) if self._report(doc) else None


def _file_digest(path: Path) -> str:
    with path.open("rb") as f:
        return "sha256:" + hashlib.file_digest(f, "sha256").hexdigest()
