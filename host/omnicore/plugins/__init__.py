"""The wasm plugin host behind ``app.plugins``.

One concept per module: :mod:`~omnicore.plugins.host` (load, call, reload, grant),
:mod:`~omnicore.plugins.info` (what a plugin looks like from outside),
:mod:`~omnicore.plugins.settings` and :mod:`~omnicore.plugins.sidecar` (the operator's
settings), :mod:`~omnicore.plugins.versions` (leases for zero-downtime reload),
:mod:`~omnicore.plugins.folder` (the watched folder), :mod:`~omnicore.plugins.breaker`,
:mod:`~omnicore.plugins.stats`, :mod:`~omnicore.plugins.health`,
:mod:`~omnicore.plugins.events`, and :mod:`~omnicore.plugins.extension` (the app wiring).
"""

from omnicore.plugins.host import PluginHost
from omnicore.plugins.info import PluginInfo, PluginState

__all__ = ["PluginHost", "PluginInfo", "PluginState"]
