"""Background work: the TaskEngine (an async worker pool)."""

from omnicore.runtime.tasks import TaskEngine, TaskHandle

__all__ = ["TaskEngine", "TaskHandle"]
