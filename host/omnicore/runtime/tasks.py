"""The seed's import path of the TaskEngine (DESIGN), kept so it works.

The engine lives in :mod:`omnicore.core.tasks`.
"""

from omnicore.core.tasks import TaskEngine

__all__ = ["TaskEngine"]
