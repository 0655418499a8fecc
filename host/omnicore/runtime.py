"""The seed's import path of the TaskEngine (DESIGN), kept so it works::

    from omnicore.runtime.tasks import TaskEngine

The engine lives in :mod:`omnicore.core.tasks`, and ``omnicore.runtime.tasks`` is that very
module under its old name (registered as :mod:`os` registers ``os.path``), so no folder holds
an alias. ("runtime" otherwise means a plugin's runtime, :class:`omnicore.sandbox.PluginRuntime`.)
"""

import sys

from omnicore.core import tasks

sys.modules[__name__ + ".tasks"] = tasks

__all__: list[str] = []
