"""Old home of the TaskEngine, kept so existing imports work: see :mod:`omnicore.core.tasks`.

("runtime" now means only a plugin's runtime, :class:`omnicore.sandbox.PluginRuntime`.)
"""

from omnicore.core.tasks import TaskEngine, TaskHandle

__all__ = ["TaskEngine", "TaskHandle"]
