"""``omnicore plugins publish|versions|rollback|pin|unpin|remove|catalog``: the plugin catalog.

The catalog lives in the app's store (``storage.url``, else ``<data_dir>/omnicore.db``), and
every host of that store loads what it names within a few seconds (specs/catalog.md). One
door, as ``omnicore settings`` has it: when ``omnicore run`` serves the app (or ``--remote
URL`` names a host, its token in ``$OMNICORE_TOKEN``), the command asks that host through its
REST API (``/api/v1/catalog``: the same checks and audit entries as a script's) and imports no
host code; with no host to ask it opens the store itself and holds the publish to the same
checks (:class:`omnicore.plugins.catalog.Catalog`), compiling it as this app's hosts do.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import click

from omnicore.cli.appdata import app_option, load_app_config
from omnicore.cli.plugin_group import plugins_group

if TYPE_CHECKING:
    from omnicore.cli.remote import Remote
    from omnicore.plugins.catalog import Catalog

__all__ = ["catalog_list", "pin", "publish", "remove", "rollback", "unpin", "versions"]

_APP = app_option("The app folder (its omnicore.yaml names the store).")
_REMOTE = click.option("--remote", metavar="URL",
                       help="Ask the host at URL (token in $OMNICORE_TOKEN) instead of the app's "
                            "own.")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the answer as JSON.")
_SIDECAR_SUFFIXES = (".toml", ".yaml", ".yml")


def _host(appdir: Path, remote: str | None) -> Remote | None:
    from omnicore.cli.remote import explicit, running_host

    return explicit(remote) if remote else running_host(appdir)[1]


def _path(name: str, tail: str = "") -> str:
    return f"/api/v1/catalog/{quote(name, safe='')}{tail}"


@contextmanager
def _catalog(appdir: Path) -> Iterator[Catalog]:
    """The app's catalog opened here, a publish compiled as its hosts compile (the app's
    engine settings and module cache, its capabilities' manifest checks)."""
    from omnicore.app import OmniApp
    from omnicore.plugins.catalog import app_catalog

    app = OmniApp(config=load_app_config(appdir), default_modules=False)
    try:
        app.extensions.load_entry_points()
        yield app_catalog(lambda: app.storage, app.plugins.published.check_module,
                          app.config.catalog, app.config.trust)
    finally:
        app.close()


def _audit(appdir: Path, verb: str, name: str, after: Any = None) -> None:
    from omnicore.accounts.audit import Actor, record
    from omnicore.cli.appdata import app_storage

    with app_storage(appdir) as store:
        record(store, Actor.cli(), verb, name, None, after)


def _sidecar_beside(wasm: Path) -> tuple[Path | None, dict[str, Any]]:
    """The sidecar next to ``wasm`` as data (the host checks it: one set of rules)."""
    found = [wasm.with_suffix(s) for s in _SIDECAR_SUFFIXES if wasm.with_suffix(s).is_file()]
    if not found:
        return None, {}
    if len(found) > 1:
        raise click.UsageError(f"{wasm.name} has two sidecars ({', '.join(p.name for p in found)})"
                               "; keep one, or name it with --sidecar")
    return found[0], _read_sidecar(found[0])


def _read_sidecar(path: Path) -> dict[str, Any]:
    import tomllib

    import yaml

    from omnicore import yamlfile

    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else yamlfile.load(text, str(path))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise click.UsageError(f"{path}: cannot read the sidecar: "
                               f"{' '.join(str(exc).split())}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise click.UsageError(f"{path}: a sidecar is a table/mapping at the top level")
    return data


def _short(digest: str) -> str:
    return digest[:19]


def _when(at: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) if at else "-"


@plugins_group.command("publish")
@click.argument("file", metavar="FILE|oci://REF")
@click.option("--name", help="The plugin's name in the catalog (default: its manifest's).")
@click.option("--sidecar", "sidecar_file", type=click.Path(exists=True, dir_okay=False,
                                                           path_type=Path),
              help="Its sidecar (default: FILE's NAME.toml/.yaml beside it; an artifact's "
                   "own).")
@click.option("--unsigned-sidecar", "unsigned_sidecar", metavar="REASON",
              help="Apply a sidecar no trusted key covers, for REASON (kept in the audit log); "
                   "refused unless plugins.trust.allow_unsigned_sidecar is on.")
@_APP
@_REMOTE
@_JSON
def publish(file: str, name: str | None, sidecar_file: Path | None,
            unsigned_sidecar: str | None, appdir: Path, remote: str | None,
            as_json: bool) -> None:
    """Publish FILE, or the artifact oci://REGISTRY/REPO:TAG|@sha256:... names, to the app's
    plugin catalog: every host of its store loads it.

    The sidecar goes with it (config, limits, enabled, mcp); its grants are requests, which
    the operator grants (omnicore settings grant). FILE.sig beside FILE (cosign sign-blob's)
    and an artifact's cosign signatures are kept with the version: under plugins.trust.require
    an unsigned module is refused, here and at every host's load. So is a sidecar no trusted
    key covers: an artifact's own is covered by its signature; another (--sidecar, or one
    beside FILE) needs its own SIDECAR.sig beside it, or --unsigned-sidecar REASON. A module
    older than the one in force is said so (catalog.refuse_older refuses it). Publishing the
    module, sidecar and signatures in force again changes nothing.
    """
    from omnicore.oci import is_reference

    if is_reference(file):
        doc, via = _publish_pulled(file, name, sidecar_file, appdir, remote, unsigned_sidecar)
        where: Path | None = sidecar_file
    else:
        doc, via, where = _publish_file(Path(file), name, sidecar_file, appdir, remote,
                                        unsigned_sidecar)
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    side = f" with {where.name}" if where is not None else ""
    if not doc.get("created", True):
        click.echo(f"{doc['name']}: v{doc['number']} ({_short(doc['digest'])}) is in force "
                   "already; nothing changed")
        return
    signed = doc.get("signed_by") or []
    extra = f", signed by {', '.join(k[:19] for k in signed)}" if signed else ""
    source = f" from {doc['source']}" if doc.get("source") else ""
    click.echo(f"published {doc['name']} v{doc['number']} ({_short(doc['digest'])}, "
               f"{doc['size']} bytes{extra}){side}{source} to {via}")
    older = doc.get("older")
    if older:
        click.echo(f"omnicore: {doc['name']}: this module is OLDER than the one in force "
                   f"(v{older['in_force_number']}, {_short(older['in_force'])}): it was "
                   f"published before as v{older['seen_as']}; catalog.refuse_older: true "
                   "refuses such a publish", err=True)
    if doc.get("unsigned_sidecar"):
        click.echo(f"omnicore: its sidecar is applied unsigned, by override "
                   f"({doc['unsigned_sidecar']}): recorded in the audit log", err=True)
    if doc.get("pinned_to"):
        click.echo(f"omnicore: {doc['name']} is pinned to {_short(doc['pinned_to'])}: every "
                   f"host keeps serving that version; `omnicore plugins unpin {doc['name']}` "
                   "puts this one in force", err=True)
        return
    grants = (doc.get("sidecar") or {}).get("grants")
    if grants:
        click.echo(f"omnicore: the sidecar asks for grants {json.dumps(grants)}: requests only; "
                   f"grant them with `omnicore settings grant {doc['name']} CAP`", err=True)
    from omnicore.plugins.catalog import reach_line

    live = doc.get("hosts_live")
    click.echo(f"omnicore: {reach_line(live if isinstance(live, int) else None)}", err=True)


def _refused(exc: Exception) -> click.ClickException:
    return click.ClickException(" ".join(str(exc).split()))


def _blob_signature(file: Path) -> list[Any]:
    """FILE.sig (cosign sign-blob: base64 DER) as a signature, if there is one."""
    from omnicore.oci import BlobSignature

    sig = file.with_name(file.name + ".sig")
    if not sig.is_file():
        return []
    try:
        return [BlobSignature(base64.b64decode(sig.read_bytes().strip(), validate=True))]
    except ValueError:
        raise click.UsageError(f"{sig} is not a signature (base64, as cosign sign-blob "
                               "writes)") from None


def _sidecar_signature(sidecar: Path | None) -> list[Any]:
    """SIDECAR.sig beside the sidecar file (cosign sign-blob of its bytes), with the bytes
    it signs, if there is one."""
    from omnicore.oci.signing import MAX_SIDECAR_TEXT, SidecarSignature

    if sidecar is None:
        return []
    sig = sidecar.with_name(sidecar.name + ".sig")
    if not sig.is_file():
        return []
    text = sidecar.read_bytes()
    if len(text) > MAX_SIDECAR_TEXT:
        raise click.UsageError(f"{sidecar} is over {MAX_SIDECAR_TEXT} bytes: a sidecar is "
                               "settings, not data")
    try:
        return [SidecarSignature(text, base64.b64decode(sig.read_bytes().strip(),
                                                        validate=True))]
    except ValueError:
        raise click.UsageError(f"{sig} is not a signature (base64, as cosign sign-blob "
                               "writes)") from None


def _publish_audit(appdir: Path, done: Any) -> None:
    if not done.made:
        return
    _audit(appdir, "catalog.publish", done.version.name, done.audit())
    if done.override is not None:
        _audit(appdir, "catalog.unsigned_sidecar", done.version.name,
               {"version": done.version.number, "digest": done.version.digest,
                "reason": done.override, "sidecar": done.version.sidecar})


def _live(appdir: Path) -> dict[str, Any]:
    from omnicore.cli.appdata import app_storage
    from omnicore.plugins.catalog import live_hosts

    cfg = load_app_config(appdir)
    with app_storage(appdir) as store:
        return {"hosts_live": live_hosts(store.instances.all(), cfg.cluster.dead_after_s)}


def _publish_file(file: Path, name: str | None, sidecar_file: Path | None, appdir: Path,
                  remote: str | None, unsigned_sidecar: str | None = None
                  ) -> tuple[dict[str, Any], str, Path | None]:
    from omnicore.oci import SignatureRefused, signature_to_json
    from omnicore.oci.signing import sidecar_signature_to_json
    from omnicore.plugins.catalog import BadPublish, digest_of

    if not file.is_file():
        raise click.BadParameter(f"{str(file)!r} is neither a file nor oci://...",
                                 param_hint="FILE")
    data = file.read_bytes()
    where, sidecar = (sidecar_file, _read_sidecar(sidecar_file)) if sidecar_file \
        else _sidecar_beside(file)
    signatures = _blob_signature(file)
    sidecar_sigs = _sidecar_signature(where)
    digest = digest_of(data)
    host = _host(appdir, remote)
    if host is not None:
        target = name or _manifest_name(file) or file.stem
        body: dict[str, Any] = {
            "module": base64.b64encode(data).decode(), "digest": digest, "sidecar": sidecar,
            "signatures": [signature_to_json(s) for s in signatures]
            + [sidecar_signature_to_json(s) for s in sidecar_sigs]}
        if unsigned_sidecar is not None:
            body["unsigned_sidecar"] = unsigned_sidecar
        doc = host.request("PUT", _path(target), body, timeout=300.0)
        return doc, f"the host at {host.url}", where
    with _catalog(appdir) as catalog:
        try:
            done = catalog.publication(data, name=name, sidecar=sidecar, digest=digest,
                                       by="cli", signatures=signatures,
                                       sidecar_signatures=sidecar_sigs,
                                       unsigned_sidecar=unsigned_sidecar)
        except (SignatureRefused, BadPublish) as exc:
            raise _refused(exc) from None
    version = done.version
    doc = {**version.as_dict(), "created": done.made, **done.as_dict(),
           **_held_by_pin(appdir, version.name, version.id), **_live(appdir)}
    _publish_audit(appdir, done)
    return doc, "the app's store", where


def _publish_pulled(ref: str, name: str | None, sidecar_file: Path | None, appdir: Path,
                    remote: str | None, unsigned_sidecar: str | None = None
                    ) -> tuple[dict[str, Any], str]:
    """Publish what the registry holds at ``ref``: pulled with the trust policy (signatures
    checked before the module is downloaded), its signatures kept with the version, the
    reference by digest as its source."""
    from omnicore import oci

    host = _host(appdir, remote)
    if host is not None:
        if sidecar_file is not None:
            raise click.UsageError("--sidecar with oci://... goes to a host only as the "
                                   "artifact's own sidecar; publish without --remote, or "
                                   "push the artifact with that sidecar")
        target = name or ref.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
        doc = host.request("PUT", _path(target), {"source": ref}, timeout=300.0)
        return doc, f"the host at {host.url}"
    from omnicore.plugins.catalog import BadPublish

    cfg = load_app_config(appdir)
    try:
        pulled = oci.pull(ref, options=oci.Options.from_config(cfg.registry),
                          policy=oci.TrustPolicy.from_config(cfg.trust), plugin=name)
    except (oci.RegistryError, oci.SignatureRefused) as exc:
        raise _refused(exc) from None
    # A --sidecar replaces the artifact's own: the signature of the artifact does not cover
    # it, so it needs its own (SIDECAR.sig) or an override (catalog.publication checks).
    sidecar = _read_sidecar(sidecar_file) if sidecar_file else pulled.sidecar
    with _catalog(appdir) as catalog:
        try:
            done = catalog.publication(
                pulled.module, name=name or pulled.name, sidecar=sidecar,
                digest=pulled.module_digest, by="cli", source=str(pulled.reference),
                signatures=pulled.signatures,
                sidecar_signatures=_sidecar_signature(sidecar_file),
                unsigned_sidecar=unsigned_sidecar)
        except (oci.SignatureRefused, BadPublish) as exc:
            raise _refused(exc) from None
    version = done.version
    doc = {**version.as_dict(), "created": done.made, **done.as_dict(),
           **_held_by_pin(appdir, version.name, version.id), **_live(appdir)}
    _publish_audit(appdir, done)
    return doc, "the app's store"


def _held_by_pin(appdir: Path, name: str, version_id: int) -> dict[str, Any]:
    from omnicore.cli.appdata import app_storage

    with app_storage(appdir) as store:
        entry = store.catalog.entry(name)
    if entry is not None and entry.pinned and entry.version is not None \
            and entry.version.id != version_id:
        return {"pinned_to": entry.version.digest}
    return {}


def _entry_doc(entry: Any) -> dict[str, Any]:
    return {"name": entry.name, "version": entry.version.as_dict() if entry.version else None,
            "updated_at": entry.updated_at, "updated_by": entry.updated_by,
            "pinned": entry.pinned, "pinned_at": entry.pinned_at, "pinned_by": entry.pinned_by}


def _change(appdir: Path, remote: str | None, as_json: bool, name: str, verb: str,
            ask: tuple[str, str, dict[str, Any] | None],
            local: Callable[[Any], Any]) -> dict[str, Any] | None:
    """One change of NAME's version in force (rollback, pin, unpin): through the running host
    (``ask``: its REST method, path and body), else ``local(catalog)`` on the app's store,
    audited as ``catalog.<verb>``. Prints the answer's JSON with ``--json`` (then None);
    otherwise the version now in force, for the command's line."""
    host = _host(appdir, remote)
    if host is not None:
        doc = host.request(*ask)
    else:
        with _catalog(appdir) as catalog:
            entry = local(catalog)
        doc = _entry_doc(entry)
        _audit(appdir, f"catalog.{verb}", name, entry.version.digest if entry.version else None)
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return None
    version: dict[str, Any] = doc["version"]
    return version


def _manifest_name(file: Path) -> str | None:
    # The name the host would give it, read without host code (the custom section's JSON).
    from omnicore.cli.plugins import _manifest_name as read

    try:
        return read(file)
    except Exception:
        return None


@plugins_group.command("versions")
@click.argument("name")
@_APP
@_REMOTE
@_JSON
def versions(name: str, appdir: Path, remote: str | None, as_json: bool) -> None:
    """List NAME's versions kept in the catalog, newest first (* marks the one in force,
    "pinned" a pin holding it there)."""
    host = _host(appdir, remote)
    if host is not None:
        doc = host.request("GET", _path(name))
    else:
        with _catalog(appdir) as catalog:
            doc = {**_entry_doc(catalog.entry(name)),
                   "versions": [v.as_dict() for v in catalog.versions(name)]}
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    current = (doc.get("version") or {}).get("id")
    for v in doc["versions"]:
        mark = "*" if v["id"] == current else " "
        pinned = f"  pinned by {doc.get('pinned_by') or '-'}" \
            if v["id"] == current and doc.get("pinned") else ""
        click.echo(f"{mark} v{v['number']:<4} {_short(v['digest'])}  {v['size']:>10} bytes  "
                   f"{_when(v['published_at'])}  {v['published_by'] or '-'}{pinned}")
    if current is None:
        click.echo(f"omnicore: {name} is not in force (removed); `omnicore plugins rollback "
                   f"{name}` puts its newest version back", err=True)


@plugins_group.command("rollback")
@click.argument("name")
@click.argument("to", required=False, metavar="[DIGEST|vN]")
@_APP
@_REMOTE
@_JSON
def rollback(name: str, to: str | None, appdir: Path, remote: str | None,
             as_json: bool) -> None:
    """Put an earlier version of NAME in force on every host: the one DIGEST (or a prefix of
    it, or vN) names, else the one before the version in force."""
    v = _change(appdir, remote, as_json, name, "rollback",
                ("POST", _path(name, "/rollback"), {} if to is None else {"to": to}),
                lambda catalog: catalog.rollback(name, to, by="cli"))
    if v is not None:
        click.echo(f"{name}: v{v['number']} ({_short(v['digest'])}) is in force; every host "
                   "loads it within a few seconds")


@plugins_group.command("pin")
@click.argument("name")
@click.argument("digest", metavar="DIGEST|vN")
@_APP
@_REMOTE
@_JSON
def pin(name: str, digest: str, appdir: Path, remote: str | None, as_json: bool) -> None:
    """Pin NAME to the version DIGEST (or a prefix of it, or vN) names: every host serves it
    whatever is published later, until `omnicore plugins unpin NAME`. Rollback and remove
    are refused meanwhile; a later publish adds a version without putting it in force."""
    v = _change(appdir, remote, as_json, name, "pin",
                ("PUT", _path(name, "/pin"), {"digest": digest}),
                lambda catalog: catalog.pin(name, digest, by="cli"))
    if v is not None:
        click.echo(f"{name}: pinned to v{v['number']} ({_short(v['digest'])}); every host "
                   "serves it until `omnicore plugins unpin " + name + "`")


@plugins_group.command("unpin")
@click.argument("name")
@_APP
@_REMOTE
@_JSON
def unpin(name: str, appdir: Path, remote: str | None, as_json: bool) -> None:
    """Release NAME's pin: its newest version goes in force on every host."""
    v = _change(appdir, remote, as_json, name, "unpin", ("DELETE", _path(name, "/pin"), None),
                lambda catalog: catalog.unpin(name, by="cli"))
    if v is not None:
        click.echo(f"{name}: unpinned; v{v['number']} ({_short(v['digest'])}) is in force, "
                   "every host loads it within a few seconds")


@plugins_group.command("remove")
@click.argument("name")
@_APP
@_REMOTE
def remove(name: str, appdir: Path, remote: str | None) -> None:
    """Take NAME out of the catalog: every host falls back to its own folder's file of that
    name, or unloads it. Its versions are kept (rollback puts one back)."""
    host = _host(appdir, remote)
    if host is not None:
        host.request("DELETE", _path(name))
    else:
        with _catalog(appdir) as catalog:
            gone = catalog.remove(name, by="cli")
        if gone is not None:
            _audit(appdir, "catalog.remove", name)
    click.echo(f"{name}: out of the catalog; each host serves its folder's file of that name, "
               "if it has one")


@plugins_group.command("catalog")
@_APP
@_REMOTE
@_JSON
def catalog_list(appdir: Path, remote: str | None, as_json: bool) -> None:
    """List the catalog's plugins and how many hosts serve each one's version in force."""
    host = _host(appdir, remote)
    if host is not None:
        doc = host.request("GET", "/api/v1/catalog")
    else:
        from omnicore.cli.appdata import app_storage
        from omnicore.plugins.catalog import rollouts

        with app_storage(appdir) as store:
            entries = store.catalog.entries()
            where = {r["name"]: r for r in rollouts(entries, store.instances.all())}
        doc = {"items": [{**_entry_doc(e), "rollout": where.get(e.name)} for e in entries],
               "converged": all(r["converged"] for r in where.values())}
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
        return
    if not doc["items"]:
        click.echo("the catalog is empty (omnicore plugins publish FILE)")
        return
    for item in doc["items"]:
        v, r = item["version"], item.get("rollout") or {}
        hosts = r.get("hosts") or []
        line = f"{item['name']:<24} v{v['number']:<4} {_short(v['digest'])}  " \
               f"{r.get('serving', 0)}/{len(hosts)} hosts" + \
               ("  pinned" if item.get("pinned") else "")
        lagging = [f"{h['runtime_id']}: {h['error'] or h['state'] or 'not yet'}"
                   for h in hosts if h["digest"] != v["digest"]]
        click.echo(line + ("" if not lagging else "  (" + "; ".join(lagging) + ")"))
    click.echo("converged" if doc["converged"] else "not converged yet", err=True)
