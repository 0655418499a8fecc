"""The built-in extension that gives an app its plugin host (``app.plugins``).

:func:`register` attaches a :class:`~omnicore.plugins.host.PluginHost` configured from
``app.config``, with the operator's settings of the app's database; :func:`startup` follows
those settings and the plugin catalog (``catalog.follow``), then loads and watches
``plugins_dir`` (the layer beneath the catalog); :func:`shutdown` stops following and
watching and closes every runtime.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from omnicore.plugins.convergence import CatalogFollower
from omnicore.plugins.folder import PluginFolder
from omnicore.plugins.host import PluginHost
from omnicore.plugins.operator import OperatorSettings
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.modkey import ModuleKey
from omnicore.storage.base import Storage
from omnicore.storage.catalog_rows import PluginVersion
from omnicore.types import HostApp

__all__ = ["register", "shutdown", "startup"]


class KeyedData(Protocol):
    """The app's data as this extension needs it (``omnicore.app_data.AppData``)."""

    def module_key(self) -> ModuleKey: ...


class PluginsApp(HostApp, Protocol):
    """The app as this extension sees it: the one that attaches ``app.plugins``, so the one
    place that names the concrete :class:`PluginHost` (``OmniApp`` implements it)."""

    @property
    def plugins(self) -> PluginHost: ...

    @plugins.setter
    def plugins(self, host: PluginHost) -> None: ...

    @property
    def storage(self) -> Storage:
        """The app's storage, opened on first use."""

    @property
    def data(self) -> KeyedData:
        """The app's data dir and stores: where its compiled-module key comes from."""


def register(app: PluginsApp) -> None:
    """Attach ``app.plugins``: a :class:`PluginHost` configured from ``app.config``.

    Nothing heavy happens here (the engine is made on first use); every plugin shows up in
    ``app.health`` as ``plugin:<name>`` and in ``app.metrics`` as ``omnicore_plugin_*``.
    """
    cfg = app.config
    sandbox = cfg.sandbox
    defaults = Limits().merged(sandbox.limits.model_dump())
    health = _module_or_none(app, "health")
    # Read on first use: registering opens no database.
    operator = OperatorSettings(lambda: app.storage.plugin_settings)
    host = PluginHost(
        # The key is got when the first module is read from the cache, not here (it may
        # open the database).
        engine_factory=partial(SandboxEngine.for_config, sandbox,
                               module_key=app.data.module_key),
        # Built-ins arrive through the same hook as third-party capabilities.
        capabilities=app.extensions.capabilities, defaults=defaults,
        plugin_settings=cfg.plugins, failure_threshold=sandbox.circuit.failure_threshold,
        cooldown_s=sandbox.circuit.cooldown_s, events=app.events.publish, health=health,
        data_dir=cfg.data_dir, operator=operator, load_wait_s=sandbox.load_wait_ms / 1000)
    app.plugins = host
    metrics = _module_or_none(app, "metrics")
    if metrics is not None:
        from omnicore.plugins.metrics import PluginMetricsCollector

        metrics.add_collector(PluginMetricsCollector(host.stats_items))


def startup(app: PluginsApp) -> None:
    """Load every plugin in ``plugins_dir`` and, with ``sandbox.watch``, follow the folder."""
    host = app.plugins
    host.refresh_capabilities()  # extensions loaded at start may have added capabilities
    follower = _follower(app) if app.config.catalog.follow else None
    if host.operator is not None:
        # Before the folder: every plugin loads with the settings every instance applies.
        host.operator.follow(host.settings_changed, app.storage.on_settings)
    if follower is not None:
        # Before the folder too: a name the catalog serves is not loaded from the folder.
        host.published.follower = follower
        follower.follow(app.storage.on_catalog)
        publish_sources_of(app, app.config.catalog.sources)
    # In the background: the host serves while the folder's files load, one by one in
    # order (their compiles run ahead in parallel), each as soon as it is ready; a call to
    # one still loading waits for it (plugins.arrivals), and /readyz lists them.
    started = time.monotonic()

    def loaded(folder: PluginFolder) -> None:
        count = sum(1 for p in host if p.state == "loaded")
        app.log.info("plugins: %d loaded, %d total from %s in %.2fs%s", count, len(host),
                     folder.path, time.monotonic() - started,
                     " (watching)" if folder.watching else "")

    folder = host.watch_folder(app.config.plugins_dir, watch=app.config.sandbox.watch,
                               required=app.config.source_of("plugins_dir") != "default",
                               background=True, loaded=loaded)
    app.log.info("plugins: loading %d from %s", len(host), folder.path)


def shutdown(app: PluginsApp) -> None:
    """Stop watching and close every plugin runtime (in-flight calls finish first)."""
    host = app.plugins
    if host.published.follower is not None:
        host.published.follower.stop()
    if host.operator is not None:
        host.operator.stop()
    host.close()


def _follower(app: PluginsApp) -> CatalogFollower:
    from omnicore.oci.trust import TrustPolicy

    storage = app.storage

    def report(status: Mapping[str, Any]) -> bool:
        return storage.instances.report(app.runtime_id, status)

    def waived(version: PluginVersion, cover: str) -> None:
        audit_waiver(storage, version, cover, f"{app.name} ({app.runtime_id})")

    return CatalogFollower(lambda: storage.catalog, app.plugins,
                           Path(app.config.data_dir) / "catalog",
                           poll_s=app.config.catalog.poll_s, report=report,
                           policy=TrustPolicy.from_config(app.config.trust),
                           refuse_older=app.config.catalog.refuse_older, waived=waived)


def audit_waiver(storage: Any, version: PluginVersion, cover: str, host: str) -> bool:
    """One ``catalog.unsigned_sidecar`` entry for ``version`` applied by override on
    ``host``, unless the trail holds one for this version already (its publish's, through
    the CLI or the API, or the first host's to apply it): a version whose override was
    written straight into the catalog table is audited once, by the first host that applies
    it, not at every host's start. True when an entry was written. Two hosts applying it in
    the same instant may each write one (each checks, then writes)."""
    from omnicore.accounts.audit import Actor, record
    from omnicore.oci.trust import Stored

    for e in storage.audit.entries(action_prefix="catalog.unsigned_sidecar",
                                   target=version.name, limit=1000):
        after = e.after if isinstance(e.after, dict) else {}
        if after.get("version") == version.number and after.get("digest") == version.digest:
            return False
    stored = version.signatures if isinstance(version.signatures, list) else []
    waiver = Stored.from_json(stored).waiver  # clipped, printable: a table writer's text
    record(storage, Actor(f"host {host}", "catalog"), "catalog.unsigned_sidecar",
           version.name, None,
           {"version": version.number, "digest": version.digest,
            "reason": waiver.reason if waiver else "", "by": waiver.by if waiver else "",
            "sidecar": version.sidecar, "applied_by": host, "cover": cover,
            "published": "no publish entry: written into the catalog outside omnicore's "
                         "publish, or its entry purged"})
    return True



def publish_sources_of(app: PluginsApp, refs: Sequence[str]) -> bool:
    """Pull and publish ``refs`` (``catalog.sources``, at start or added by a config reload)
    on a thread of their own (plugins.sources); False when this host follows no catalog."""
    from omnicore.plugins.catalog import app_catalog
    from omnicore.plugins.sources import start_publishing

    follower = app.plugins.published.follower
    if follower is None:
        return False
    if refs:
        storage = app.storage
        catalog = app_catalog(lambda: storage, app.plugins.published.check_module,
                              app.config.catalog, app.config.trust)
        start_publishing(list(refs), app.config, catalog, follower.wake)
    return True


def _module_or_none(app: HostApp, module: str) -> Any:
    try:
        return app.get_module(module)
    except (KeyError, TypeError):
        return None
