"""Old home of the TaskEngine: ``omnicore.runtime.tasks.TaskEngine`` is the seed's import path
(DESIGN), kept so it works; the engine lives in :mod:`omnicore.core.tasks`.

("runtime" now means only a plugin's runtime, :class:`omnicore.sandbox.PluginRuntime`.)
"""

__all__: list[str] = []
