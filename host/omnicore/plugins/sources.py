"""Plugins declared in config: ``catalog.sources``, OCI references each host publishes to the
plugin catalog at start (specs/catalog.md "Sources in config").

A container image then carries no plugin and a deploy names them where the operator keeps the
rest of the config (a Kubernetes ConfigMap): each host pulls each reference with its
``registry.*`` and ``plugins.trust`` (signatures checked before the module is downloaded,
SignatureRefused under ``require``) and publishes it, with its sidecar and signatures, the
reference by digest as its source, unless the catalog keeps a version of that module under
that name already (so a restart, or three hosts starting at once, publish it once, and a
rollback or a pin is not undone by the next restart). Every host then converges on the catalog
as for any publish. It runs on a thread of its own: a slow or unreachable registry never holds
the host's start; what fails is one warning naming the reference and why.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from omnicore.errors import OmniError

if TYPE_CHECKING:
    from omnicore.config.schema import OmniConfig
    from omnicore.plugins.catalog import Catalog

__all__ = ["publish_sources", "start_publishing"]

log = logging.getLogger("omnicore.plugins.catalog")


def publish_sources(refs: Sequence[str], config: OmniConfig, catalog: Catalog,
                    changed: Callable[[], None] = lambda: None) -> list[str]:
    """Pull and publish each of ``refs`` not kept already (module docstring); the names
    published now. ``changed`` is called after each publish (the follower's wake)."""
    from omnicore import oci

    done = []
    for ref in refs:
        try:
            pulled = oci.pull(ref, options=oci.Options.from_config(config.registry),
                              policy=oci.TrustPolicy.from_config(config.trust))
            name = pulled.name or ref.split("@")[0].rsplit("/", 1)[-1].split(":")[0]
            try:
                kept = {v.digest for v in catalog.versions(name)}
            except OmniError:
                kept = set()  # never published
            if pulled.module_digest in kept:
                log.info("catalog.sources: %s is %s (%s) in the catalog already", ref, name,
                         pulled.module_digest[:19])
                continue
            version, made = catalog.publish(
                pulled.module, name=name, sidecar=pulled.sidecar,
                digest=pulled.module_digest, by="catalog.sources",
                source=str(pulled.reference), signatures=pulled.signatures)
        except (OmniError, OSError) as exc:
            log.warning("catalog.sources: %s not published: %s", ref, " ".join(str(exc).split()))
            continue
        if made:
            log.info("catalog.sources: published %s v%d (%s) from %s", version.name,
                     version.number, version.digest[:19], ref)
            done.append(version.name)
            changed()
    return done


def start_publishing(refs: Sequence[str], config: OmniConfig, catalog: Catalog,
                     changed: Callable[[], None]) -> threading.Thread:
    """:func:`publish_sources` on a daemon thread (the host's start does not wait)."""
    thread = threading.Thread(target=publish_sources, args=(refs, config, catalog, changed),
                              name="omnicore-catalog-sources", daemon=True)
    thread.start()
    return thread
