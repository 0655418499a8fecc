"""Old home of the TaskEngine, kept so existing imports work: see :mod:`omnicore.core.tasks`."""

from omnicore.core.tasks import TaskEngine, TaskHandle

__all__ = ["TaskEngine", "TaskHandle"]
