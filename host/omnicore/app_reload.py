"""Config reload: an edit of ``omnicore.yaml`` applies to the running host.

:class:`ConfigReload` is the module ``omnicore run`` adds: it follows the config file with the
plugin folder's watcher (:func:`omnicore.config.watch.follow`) and on a change reads it again,
layered and validated exactly as at start. A file that fails validation changes nothing and
logs one line saying why. Otherwise each changed key is either live, applied by the function
of its section in :data:`SECTIONS`, or needs a restart: those keys are named in one log line
and keep their running values. The reload is one entry of the audit log (``config.reload``).

Plugin sidecars are followed by the plugin folder itself (``plugins/folder.py``): an edit
re-links that plugin at once, and this module records it (``config.reload``, the plugin).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omnicore.config import OmniConfig, load_config
from omnicore.config.watch import follow
from omnicore.core.module import Module
from omnicore.errors import OmniError
from omnicore.filestamp import Stamp, stamp_of
from omnicore.sandbox.limits import Limits

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["SECTIONS", "ConfigReload", "Reloaded", "Section"]

log = logging.getLogger("omnicore.config.reload")

Key = tuple[str, ...]
#: ``apply(app, old, new, keys)``: make the live keys of one section (already in
#: ``app.config``, which is ``new``) take effect; a short account of what it did.
Apply = Callable[["OmniApp", OmniConfig, OmniConfig, list[Key]], str]


@dataclass(frozen=True)
class Section:
    """Keys that apply live, and the function that applies them."""

    #: Key prefixes of the section (``("sandbox", "limits")``).
    prefixes: tuple[Key, ...]
    apply: Apply
    #: Checks what pydantic cannot before anything is applied (raises ConfigError): the new
    #: config, against the running app.
    check: Callable[[OmniApp, OmniConfig], None] | None = None


def _plugins(app: OmniApp, old: OmniConfig, new: OmniConfig, keys: list[Key]) -> str:
    # plugins.<name>: grants, config, limits, enabled of the app config layer.
    names = sorted({k[1] for k in keys if len(k) > 1})
    done = app.plugins.reconfigure(new.plugins, _defaults(new), names)
    return f"re-linked {', '.join(done) or 'none'}"


def _limits(app: OmniApp, old: OmniConfig, new: OmniConfig, keys: list[Key]) -> str:
    done = app.plugins.reconfigure(new.plugins, _defaults(new), None)
    return f"default limits; re-linked {', '.join(done) or 'none'}"


def _capabilities(app: OmniApp, old: OmniConfig, new: OmniConfig, keys: list[Key]) -> str:
    # A capability's host options (kv quota...) are read when the registry is made: made
    # again, then every plugin links against it.
    app.plugins.refresh_capabilities()
    done = app.plugins.reconfigure(new.plugins, _defaults(new), None)
    return f"capability options; re-linked {', '.join(done) or 'none'}"


def _check_trust(app: OmniApp, new: OmniConfig) -> None:
    # An unreadable or malformed key: the running policy stays (ConfigError names the key).
    from omnicore.oci.trust import TrustPolicy

    TrustPolicy.from_config(new.trust)


def _trust(app: OmniApp, old: OmniConfig, new: OmniConfig, keys: list[Key]) -> str:
    # Publishes read plugins.trust from app.config each time; the catalog's follower checks
    # the versions this host serves against the new policy (plugins.convergence).
    from omnicore.oci.trust import TrustPolicy

    policy = TrustPolicy.from_config(new.trust)
    follower = app.plugins.published.follower
    if follower is None:
        return f"plugins.trust (keys: {policy.describe()}); no catalog followed"
    follower.set_policy(policy)
    return f"plugins.trust (keys: {policy.describe()}); catalog versions served re-checked"


def _refuse_older(app: OmniApp, old: OmniConfig, new: OmniConfig, keys: list[Key]) -> str:
    # Publishes through this host read it from app.config; the follower holds it at load.
    follower = app.plugins.published.follower
    on = new.catalog.refuse_older
    if follower is None:
        return f"catalog.refuse_older: {str(on).lower()}; no catalog followed"
    follower.set_refuse_older(on)
    return (f"catalog.refuse_older: {str(on).lower()} (the versions serving stay; those that "
            "failed here are tried again)")


def _sources(app: OmniApp, old: OmniConfig, new: OmniConfig, keys: list[Key]) -> str:
    # The references added are pulled and published as at start, on a thread of their own
    # (each failure one warning). One taken away stays in the catalog, as any publish does:
    # every host of the store may be serving it (omnicore plugins remove NAME ends that).
    from omnicore.plugins.extension import publish_sources_of

    added = [ref for ref in new.catalog.sources if ref not in old.catalog.sources]
    if not publish_sources_of(app, added):
        return "catalog.sources: this host follows no catalog (catalog.follow is off)"
    return f"catalog.sources: publishing {', '.join(added) or 'none added'}"


def _check_mcp(app: OmniApp, new: OmniConfig) -> None:
    # A typo in mcp.expose (a pattern exposing none of the loaded plugins' handlers) is
    # refused as `omnicore mcp` and `omnicore run` refuse it at start.
    from omnicore.plugins.expose import check_expose

    check_expose(new.mcp.expose, new.source_of("mcp.expose"), app.plugins)


def _mcp(app: OmniApp, old: OmniConfig, new: OmniConfig, keys: list[Key]) -> str:
    # The tool servers and the console read app.config.mcp on every listing.
    return f"mcp.expose {new.mcp.expose}, mcp.resources {new.mcp.resources}"


def _workflows(app: OmniApp, old: OmniConfig, new: OmniConfig, keys: list[Key]) -> str:
    app.workflows.settings = new.workflows
    return "workflow limits"


def _log(app: OmniApp, old: OmniConfig, new: OmniConfig, keys: list[Key]) -> str:
    from omnicore.logging import set_level

    set_level(new.log.level)
    return f"log level {new.log.level}"


def _check_connectors(app: OmniApp, new: OmniConfig) -> None:
    from omnicore.egress import connectors_from
    from omnicore.egress.db import db_connectors_from

    connectors_from(new.connectors)
    db_connectors_from(new.connectors)


def _connectors(app: OmniApp, old: OmniConfig, new: OmniConfig, keys: list[Key]) -> str:
    # Every connector kind applies here: the next request through app.egress uses the new
    # set, and a changed or removed database connector's pool is closed (audited each).
    app.data.reconfigure(new, old)
    return f"connectors {', '.join(sorted(new.connectors)) or 'none'}"


def _load_wait(app: OmniApp, old: OmniConfig, new: OmniConfig, keys: list[Key]) -> str:
    app.plugins.load_wait_s = new.sandbox.load_wait_ms / 1000
    return f"calls wait {new.sandbox.load_wait_ms} ms for a plugin still loading"


def _nothing(app: OmniApp, old: OmniConfig, new: OmniConfig, keys: list[Key]) -> str:
    return "read when needed"


def _defaults(cfg: OmniConfig) -> Limits:
    return Limits().merged(cfg.sandbox.limits.model_dump())


#: Every section that applies live, by name. A key under none of them needs a restart.
SECTIONS: dict[str, Section] = {
    "plugins": Section((("plugins",),), _plugins),
    "limits": Section((("sandbox", "limits"),), _limits),
    "load wait": Section((("sandbox", "load_wait_ms"),), _load_wait),
    "capabilities": Section((("capabilities",),), _capabilities),
    "mcp": Section((("mcp",),), _mcp, _check_mcp),
    # The service reads these from its settings on every step (the triggers keep their own
    # copy: webhook_window_s needs a restart).
    "workflows": Section(tuple(("workflows", k) for k in (
        "max_output_bytes", "inline_output_bytes", "max_items")), _workflows),
    "log": Section((("log", "level"),), _log),
    "shutdown": Section((("shutdown_grace_s",),), _nothing),
    # The routes' table is rebuilt from app.config on the next request (omnicore.routes).
    "serve": Section((("serve", "routes"),), _nothing),
    "connectors": Section((("connectors",),), _connectors, _check_connectors),
    "trust": Section((("trust",),), _trust, _check_trust),
    "catalog sources": Section((("catalog", "sources"),), _sources),
    "catalog refuse_older": Section((("catalog", "refuse_older"),), _refuse_older),
}
#: Keys under a section's prefix that still need a restart: the job service and the event
#: subscriptions take their options once, when they are made.
RESTART: tuple[Key, ...] = (("capabilities", "jobs"), ("capabilities", "tasks"),
                            ("capabilities", "events"))


def _flatten(value: Any, prefix: Key, out: dict[Key, Any]) -> dict[Key, Any]:
    if isinstance(value, Mapping) and value:
        for k, v in value.items():
            _flatten(v, (*prefix, str(k)), out)
    else:
        out[prefix] = value
    return out


def _under(key: Key, prefix: Key) -> bool:
    return key[:len(prefix)] == prefix


def section_of(key: Key) -> str | None:
    """The live section of ``key``, or None when it needs a restart."""
    if any(_under(key, p) for p in RESTART):
        return None
    return next((name for name, s in SECTIONS.items()
                 if any(_under(key, p) for p in s.prefixes)), None)


def _set(doc: dict[str, Any], key: Key, value: Any, present: bool) -> None:
    node = doc
    for part in key[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            if not present:
                return  # gone with its parent already (plugins.<name> removed whole)
            child = node[part] = {}
        node = child
    if present:
        node[key[-1]] = value
    else:
        node.pop(key[-1], None)


@dataclass(frozen=True)
class Reloaded:
    """What one reload did: each live section's account, and the keys left for a restart."""

    applied: dict[str, str]
    restart: list[str]


def reload(app: OmniApp, new: OmniConfig) -> Reloaded:
    """Apply ``new`` (a validated config) to the running ``app``: live keys at once, the
    rest kept at their running values and returned for a restart. A ConfigError from a
    section's check leaves everything as it was."""
    old = app.config
    before = _flatten(old.model_dump(mode="python"), (), {})
    after = _flatten(new.model_dump(mode="python"), (), {})
    changed = sorted(k for k in before.keys() | after.keys()
                     if before.get(k, _ABSENT) != after.get(k, _ABSENT))
    live: dict[str, list[Key]] = {}
    restart: list[str] = []
    doc = old.model_dump(mode="python")
    for key in changed:
        section = section_of(key)
        if section is None:
            restart.append(".".join(key))
            continue
        live.setdefault(section, []).append(key)
        _set(doc, key, after.get(key), key in after)
    if not live:
        return Reloaded({}, restart)
    if "serve" in live:  # a route removed whole leaves no empty entry behind
        doc["serve"]["routes"] = {k: v for k, v in doc["serve"]["routes"].items() if v}
    effective = OmniConfig.model_validate(doc)
    effective._sources = {**old.sources, **{k: v for k, v in new.sources.items()
                                            if section_of(tuple(k.split("."))) is not None}}
    for name in live:  # all checked before any is applied: a bad file changes nothing
        check = SECTIONS[name].check
        if check is not None:
            check(app, effective)
    app.config = app.data.config = effective
    applied = {}
    for name, keys in live.items():
        try:
            applied[name] = SECTIONS[name].apply(app, old, effective, keys)
        except Exception as exc:  # one section's failure must not stop the others
            log.error("config reload: applying %s failed: %s", name, exc)
            applied[name] = f"failed: {exc}"
    return Reloaded(applied, restart)


_ABSENT = object()


class ConfigReload(Module):
    """Follows ``path`` (the app's ``omnicore.yaml``) and applies each saved edit."""

    name = "config-reload"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen = self._stamp()
        #: The last reload's outcome (None: none yet), for tests and the curious.
        self.last: Reloaded | None = None
        self.reloads = 0

    def _stamp(self) -> Stamp | None:
        return stamp_of(self.path)

    def start(self) -> None:
        self._stop.clear()
        self._seen = self._stamp()
        app: OmniApp = self.app  # type: ignore[assignment]
        observers = app.plugins.sidecar_observers  # the folder is watched after modules start
        if self._sidecar_edited not in observers:
            observers.append(self._sidecar_edited)
        self._thread = threading.Thread(
            target=follow, name="omnicore-watch:config", daemon=True,
            args=(self.path.parent, lambda n: n == self.path.name, self.check, self._stop),
            kwargs={"label": f"config file {self.path}"})
        self._thread.start()

    def stop(self) -> None:
        app: OmniApp = self.app  # type: ignore[assignment]
        with contextlib.suppress(ValueError):
            app.plugins.sidecar_observers.remove(self._sidecar_edited)
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=5)

    def _sidecar_edited(self, plugin: str, wasm: Path) -> None:
        # The folder re-linked the plugin already; the trail says which file did it.
        from omnicore.accounts.audit import Actor, record
        from omnicore.plugins.sidecar import SIDECAR_SUFFIXES

        app: OmniApp = self.app  # type: ignore[assignment]
        found = [wasm.with_suffix(s) for s in SIDECAR_SUFFIXES if wasm.with_suffix(s).is_file()]
        info = app.plugins.get(plugin) if plugin in app.plugins else None
        record(app.storage, Actor("config-file", str(found[0] if found else wasm)),
               "config.reload", plugin, None,
               {"sidecar": found[0].name if found else None,
                "state": info.state if info else None})

    def check(self) -> None:
        """Reload if the file changed since it was last read."""
        stamp = self._stamp()
        if stamp is None or stamp == self._seen:
            return
        self._seen = stamp
        self.reload()

    def reload(self) -> Reloaded | None:
        """Read the file again and apply it; None when it does not validate (logged)."""
        app: OmniApp = self.app  # type: ignore[assignment]
        try:
            done = reload(app, load_config(self.path))
        except (OmniError, OSError) as exc:
            log.warning("config reload: %s not applied, the running config stays: %s",
                        self.path, " ".join(str(exc).split()))
            return None
        if done.restart:
            log.warning("config reload: %s changed %s; restart the host to apply (it runs on "
                        "the values it started with)", self.path.name, ", ".join(done.restart))
        if done.applied:
            log.info("config reload: %s applied: %s", self.path.name,
                     "; ".join(f"{k}: {v}" for k, v in done.applied.items()))
            from omnicore.accounts.audit import Actor, record

            record(app.storage, Actor("config-file", str(self.path)), "config.reload",
                   None, None, {"applied": done.applied, "restart": done.restart})
        self.last = done
        self.reloads += 1  # last: whoever waits on it finds the log line and the entry
        return done
