"""The plugin catalog in the REST API: publish, list, versions, rollback, pin, remove.

API (reads: any signed-in user; changes: admin; every change in the audit log)::

    GET    /api/v1/catalog                    {"items": [...]}: each plugin in force, its
                                              version and where it stands on every host
                                              (serving, converged); "converged": all of them
    PUT    /api/v1/catalog/{name}             publish: a JSON body {module: base64, sidecar:
                                              {...}, digest: "sha256:...", signatures:
                                              [oci.signature_to_json, and
                                              signing.sidecar_signature_to_json],
                                              unsigned_sidecar: "reason"}, or {source:
                                              "oci://..."} (this host pulls it with its
                                              registry.* and plugins.trust), or the module's
                                              raw bytes (application/wasm or octet-stream,
                                              ?digest=); 201 a new version, 200 unchanged;
                                              the answer says "older" (the module is older
                                              than the one in force), "sidecar_cover" and
                                              "hosts_live"
    GET    /api/v1/catalog/{name}             the version in force and the versions kept
    POST   /api/v1/catalog/{name}/rollback    {to: digest, prefix or number}, or {} for the
                                              version before the one in force
    DELETE /api/v1/catalog/{name}             out of the catalog: every host falls back to
                                              its folder's file of that name, or unloads it
    PUT    /api/v1/catalog/{name}/pin         {digest: digest, prefix or vN}: pin that
                                              version: every host serves it whatever is
                                              published later (rollback and removal refused,
                                              409) until unpinned
    DELETE /api/v1/catalog/{name}/pin         unpin: the newest version goes in force

Any host answers for all of them: the catalog is in the app's store, and every host loads
what it says within a few seconds (omnicore.plugins.convergence).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from omnicore.accounts.audit import Actor, record
from omnicore.console.base import actor, api, guarded, need, state
from omnicore.console.bodies import json_body, read_body
from omnicore.console.errors import ApiError
from omnicore.console.responses import JSONResponse
from omnicore.oci.signing import (
    BlobSignature,
    OciSignature,
    SidecarSignature,
    sidecar_signature_from_json,
    signature_from_json,
)
from omnicore.plugins.catalog import Catalog, Publication, app_catalog, live_hosts, rollouts
from omnicore.storage.catalog_rows import CatalogEntry, PluginVersion

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["catalog_of", "routes"]

#: The JSON around a module's base64 in a publish body (its sidecar, digest, keys).
JSON_SLACK = 256 * 1024
_RAW = ("application/wasm", "application/octet-stream")


def catalog_of(app: OmniApp) -> Catalog:
    """The app's catalog, a publish compiled as this host loads (``app.plugins``)."""
    return app_catalog(lambda: app.storage, app.plugins.published.check_module,
                       app.config.catalog, app.config.trust)


def version_doc(version: PluginVersion) -> dict[str, Any]:
    doc = version.as_dict()
    grants = version.sidecar.get("grants") if isinstance(version.sidecar, dict) else None
    # What the publisher asked for, for the operator to decide on (never a grant).
    doc["requested_grants"] = grants if grants is not None else []
    return doc


def entry_doc(entry: CatalogEntry) -> dict[str, Any]:
    return {"name": entry.name, "version": version_doc(entry.version) if entry.version else None,
            "updated_at": entry.updated_at, "updated_by": entry.updated_by,
            "pinned": entry.pinned, "pinned_at": entry.pinned_at, "pinned_by": entry.pinned_by}


def listing(app: OmniApp) -> dict[str, Any]:
    entries = catalog_of(app).entries()
    where = {r["name"]: r for r in rollouts(entries, app.storage.instances.all())}
    items = [{**entry_doc(e), "rollout": where.get(e.name)} for e in entries]
    return {"items": items, "converged": all(r["converged"] for r in where.values())}


def _changed(app: OmniApp) -> None:
    # This host hears of its own change at once (SQLite has no NOTIFY: it would wait a poll).
    if app.plugins.published.follower is not None:
        app.plugins.published.follower.wake()


def publish(app: OmniApp, name: str, module: bytes, sidecar: dict[str, Any] | None,
            digest: str | None, by: Actor, *, source: str | None = None,
            signatures: Sequence[BlobSignature | OciSignature] = ()
            ) -> tuple[PluginVersion, bool]:
    done = publication(app, name, module, sidecar, digest, by, source=source,
                       signatures=signatures)
    return done.version, done.made


def publication(app: OmniApp, name: str, module: bytes, sidecar: dict[str, Any] | None,
                digest: str | None, by: Actor, *, source: str | None = None,
                signatures: Sequence[BlobSignature | OciSignature] = (),
                sidecar_signatures: Sequence[SidecarSignature] = (),
                unsigned_sidecar: str | None = None) -> Publication:
    """Publish through the app's catalog (every check of a publish), audited: the publish,
    with whether it is older and what covers its sidecar, and an override on its own."""
    done = catalog_of(app).publication(module, name=name, sidecar=sidecar, digest=digest,
                                       by=by.name, source=source, signatures=signatures,
                                       sidecar_signatures=sidecar_signatures,
                                       unsigned_sidecar=unsigned_sidecar)
    if done.made:
        _changed(app)
        record(app.storage, by, "catalog.publish", name, None, done.audit())
        if done.override is not None:
            record(app.storage, by, "catalog.unsigned_sidecar", name, None,
                   {"version": done.version.number, "digest": done.version.digest,
                    "reason": done.override, "sidecar": done.version.sidecar})
    return done


def answer(app: OmniApp, done: Publication) -> dict[str, Any]:
    """A publish's answer: the version, whether it is new, what :class:`Publication` says,
    a pin holding it back, and how many hosts run to load it."""
    live = live_hosts(app.storage.instances.all(), app.config.cluster.dead_after_s)
    return {**version_doc(done.version), "created": done.made, **done.as_dict(),
            **held_by_pin(app, done.version), "hosts_live": live}


def publish_pulled(app: OmniApp, name: str, source: str,
                   by: Actor) -> tuple[PluginVersion, bool]:
    done = publication_pulled(app, name, source, by)
    return done.version, done.made


def publication_pulled(app: OmniApp, name: str, source: str, by: Actor) -> Publication:
    """Pull ``source`` (an OCI reference) with this host's ``registry.*`` and
    ``plugins.trust``, and publish it with its signatures and its own sidecar, the reference
    by digest as its source."""
    from omnicore import oci

    pulled = oci.pull(source, options=oci.Options.from_config(app.config.registry),
                      policy=oci.TrustPolicy.from_config(app.config.trust), plugin=name)
    return publication(app, name, pulled.module, pulled.sidecar, pulled.module_digest, by,
                       source=str(pulled.reference), signatures=pulled.signatures)


def rollback(app: OmniApp, name: str, to: str | None, by: Actor) -> CatalogEntry:
    catalog = catalog_of(app)
    before = catalog.entry(name).version
    entry = catalog.rollback(name, to, by=by.name)
    _changed(app)
    record(app.storage, by, "catalog.rollback", name,
           before.digest if before else None, entry.version.digest if entry.version else None)
    return entry


def remove(app: OmniApp, name: str, by: Actor) -> None:
    entry = catalog_of(app).remove(name, by=by.name)
    if entry is not None:
        _changed(app)
        record(app.storage, by, "catalog.remove", name)


def pin(app: OmniApp, name: str, digest: str, by: Actor) -> CatalogEntry:
    entry = catalog_of(app).pin(name, digest, by=by.name)
    _changed(app)
    record(app.storage, by, "catalog.pin", name, None,
           entry.version.digest if entry.version else None)
    return entry


def unpin(app: OmniApp, name: str, by: Actor) -> CatalogEntry:
    catalog = catalog_of(app)
    before = catalog.entry(name).version
    entry = catalog.unpin(name, by=by.name)
    _changed(app)
    record(app.storage, by, "catalog.unpin", name, before.digest if before else None,
           entry.version.digest if entry.version else None)
    return entry


@guarded
async def list_catalog(request: Request) -> Response:
    need(request)
    st = state(request)
    return JSONResponse(await st.off_loop(listing, st.app))


@guarded
async def get_entry(request: Request) -> Response:
    need(request)
    st, name = state(request), request.path_params["name"]

    def read() -> dict[str, Any]:
        catalog = catalog_of(st.app)
        return {**entry_doc(catalog.entry(name)),
                "versions": [version_doc(v) for v in catalog.versions(name)]}
    return JSONResponse(await st.off_loop(read))


@guarded
async def put_entry(request: Request) -> Response:
    who = need(request, "admin")
    st, name = state(request), request.path_params["name"]
    cap = st.app.config.catalog.max_module_bytes
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    sidecar: dict[str, Any] | None = None
    signatures: list[BlobSignature | OciSignature] = []
    sidecar_sigs: list[SidecarSignature] = []
    waiver: str | None = None
    if kind in _RAW:
        module = await read_body(request, cap)
        digest = request.query_params.get("digest")
    else:
        # base64 takes 4 bytes for every 3; the body may carry that and its sidecar.
        doc = await json_body(request, cap * 4 // 3 + JSON_SLACK)
        source = doc.get("source")
        if source is not None:
            if not isinstance(source, str) or not source.startswith("oci://") \
                    or "module" in doc:
                raise ApiError(422, "'source' must be an OCI reference (oci://REGISTRY/REPO:TAG"
                                    " or @sha256:...), given instead of 'module'",
                               type="BadRequest")
            done = await st.off_loop(publication_pulled, st.app, name, source,
                                     actor(request, who))
            return JSONResponse(await st.off_loop(answer, st.app, done),
                                status_code=201 if done.made else 200)
        module = _module(doc.get("module"))
        signatures, sidecar_sigs = _signatures(doc.get("signatures"))
        waiver = doc.get("unsigned_sidecar")
        if waiver is not None and (not isinstance(waiver, str) or not waiver.strip()):
            raise ApiError(422, "'unsigned_sidecar' must be the reason (a string) the audit "
                                "log keeps", type="BadRequest")
        raw_sidecar = doc.get("sidecar")
        if raw_sidecar is not None and not isinstance(raw_sidecar, dict):
            raise ApiError(422, "'sidecar' must be a JSON object (grants, config, limits, "
                                "enabled, mcp)", type="ConfigError")
        sidecar = raw_sidecar
        digest = doc.get("digest")
        if digest is not None and not isinstance(digest, str):
            raise ApiError(422, "'digest' must be a string: sha256:<64 hex>", type="BadRequest")
    done = await st.off_loop(partial(publication, signatures=signatures,
                                     sidecar_signatures=sidecar_sigs,
                                     unsigned_sidecar=waiver),
                             st.app, name, module, sidecar, digest, actor(request, who))
    return JSONResponse(await st.off_loop(answer, st.app, done),
                        status_code=201 if done.made else 200)


def held_by_pin(app: OmniApp, version: PluginVersion) -> dict[str, Any]:
    """``{"pinned_to": digest}`` when a pin keeps ``version`` from going in force."""
    entry = catalog_of(app).entry(version.name)
    if entry.pinned and entry.version is not None and entry.version.id != version.id:
        return {"pinned_to": entry.version.digest}
    return {}


def _signatures(value: object
                ) -> tuple[list[BlobSignature | OciSignature], list[SidecarSignature]]:
    if value is None:
        return [], []
    if not isinstance(value, list) or len(value) > 32:
        raise ApiError(422, "'signatures' must be a list of at most 32 signatures as "
                            "omnicore.oci.signature_to_json writes them", type="BadRequest")
    module: list[BlobSignature | OciSignature] = []
    sidecar: list[SidecarSignature] = []
    try:
        for doc in value:
            if isinstance(doc, dict) and doc.get("kind") == "cosign-sidecar":
                sidecar.append(sidecar_signature_from_json(doc))
            else:
                module.append(signature_from_json(doc))
    except (ValueError, TypeError, AttributeError):
        raise ApiError(422, "'signatures' holds one that is not a signature "
                            "({kind: cosign-blob, signature: base64}, cosign, or "
                            "cosign-sidecar)", type="BadRequest") from None
    return module, sidecar


def _module(value: object) -> bytes:
    if not isinstance(value, str) or not value:
        raise ApiError(422, "'module' must be the module's bytes in base64", type="BadRequest")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "'module' is not valid base64 (cut short on the way?)",
                       type="BadRequest") from None


@guarded
async def post_rollback(request: Request) -> Response:
    who = need(request, "admin")
    doc = await json_body(request)
    to = doc.get("to")
    if to is not None and not isinstance(to, str | int):
        raise ApiError(422, "'to' must be a digest, a prefix of one, or a version number",
                       type="BadRequest")
    st, name = state(request), request.path_params["name"]
    entry = await st.off_loop(rollback, st.app, name, None if to is None else str(to),
                              actor(request, who))
    return JSONResponse(entry_doc(entry))


@guarded
async def put_pin(request: Request) -> Response:
    who = need(request, "admin")
    doc = await json_body(request)
    digest = doc.get("digest")
    if not isinstance(digest, str) or not digest.strip():
        raise ApiError(422, "'digest' must name a version: sha256:<hex>, a prefix of 6 or more "
                            "hex digits, or vN", type="BadRequest")
    st, name = state(request), request.path_params["name"]
    entry = await st.off_loop(pin, st.app, name, digest, actor(request, who))
    return JSONResponse(entry_doc(entry))


@guarded
async def delete_pin(request: Request) -> Response:
    who = need(request, "admin")
    st, name = state(request), request.path_params["name"]
    entry = await st.off_loop(unpin, st.app, name, actor(request, who))
    return JSONResponse(entry_doc(entry))


@guarded
async def delete_entry(request: Request) -> Response:
    who = need(request, "admin")
    st, name = state(request), request.path_params["name"]
    await st.off_loop(remove, st.app, name, actor(request, who))
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    return [
        *api("/catalog", GET=list_catalog),
        *api("/catalog/{name}", GET=get_entry, PUT=put_entry, DELETE=delete_entry),
        *api("/catalog/{name}/rollback", POST=post_rollback),
        *api("/catalog/{name}/pin", PUT=put_pin, DELETE=delete_pin),
    ]
