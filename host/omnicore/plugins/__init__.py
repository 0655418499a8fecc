"""The wasm plugin host behind ``app.plugins``.

One concept per module. The host and its table: :mod:`~omnicore.plugins.host` (the public
face: load, call, reload, unload, grant), :mod:`~omnicore.plugins.entries` (the plugins by
name), :mod:`~omnicore.plugins.versions` (leases for zero-downtime reload),
:mod:`~omnicore.plugins.locks` (one plugin's lifecycle at a time), :mod:`~omnicore.plugins.calls`
(one call: lease, breaker, run, count), :mod:`~omnicore.plugins.door` (the way in from async
code: a plugin's worker threads), :mod:`~omnicore.plugins.commands` (a WASI command's
``@exec`` handler).

Making a version: :mod:`~omnicore.plugins.linking` (file and settings into what serves),
:mod:`~omnicore.plugins.runtimes` (which runtime runs each module ABI),
:mod:`~omnicore.plugins.tiers` (Winch's code until Cranelift's is ready) and
:mod:`~omnicore.plugins.ahead` (a folder compiled ahead, in parallel).

Where plugins come from, in layers: :mod:`~omnicore.plugins.folder` (the watched folder) and
:mod:`~omnicore.plugins.files` (what it asks of the host); the plugin catalog:
:mod:`~omnicore.plugins.catalog` (publish, versions, rollback, pin, remove),
:mod:`~omnicore.plugins.convergence` (a host following it), :mod:`~omnicore.plugins.published`
(its layer over the folder) and :mod:`~omnicore.plugins.sources` (``catalog.sources``).

The operator's settings: :mod:`~omnicore.plugins.settings` (layered per plugin),
:mod:`~omnicore.plugins.sidecar` (the file beside a module), :mod:`~omnicore.plugins.operator`
(the database's layer every instance applies), :mod:`~omnicore.plugins.regrants` (grants and
revokes of a running host), :mod:`~omnicore.plugins.expose` (the ``mcp.expose`` check);
:mod:`~omnicore.plugins.following`, the thread that follows a table of the store for the
operator's settings and the catalog.

What it tells: :mod:`~omnicore.plugins.info` (a plugin seen from outside),
:mod:`~omnicore.plugins.breaker`, :mod:`~omnicore.plugins.stats` and
:mod:`~omnicore.plugins.metrics`, :mod:`~omnicore.plugins.health`,
:mod:`~omnicore.plugins.events`; and :mod:`~omnicore.plugins.extension`, the app wiring.
"""

from omnicore.plugins.host import PluginHost
from omnicore.plugins.info import PluginInfo, PluginState

__all__ = ["PluginHost", "PluginInfo", "PluginState"]
