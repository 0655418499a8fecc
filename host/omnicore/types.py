"""The seams between layers, as Protocols (read by mypy and IDEs; nothing here runs).

Lower layers type what they are handed with these instead of importing the classes above
them: an extension's hooks get a :class:`HostApp`, the plugin host reports into
:class:`HealthChecks`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from omnicore.config import OmniConfig
    from omnicore.core.events import EventBus
    from omnicore.core.module import Module
    from omnicore.core.tasks import TaskEngine
    from omnicore.extensions.manager import ExtensionManager
    from omnicore.logging import BoundLogger
    from omnicore.plugins.host import PluginHost

__all__ = ["HealthChecks", "HostApp"]


class HealthChecks(Protocol):
    """Where components register their health checks (``app.health``)."""

    def register_check(self, name: str, check: Callable[[], Any]) -> None: ...

    def unregister_check(self, name: str) -> None: ...


class HostApp(Protocol):
    """What a Python host extension sees of the app (``omnicore.OmniApp`` implements it)."""

    name: str
    runtime_id: str
    config: OmniConfig
    events: EventBus
    tasks: TaskEngine
    log: BoundLogger
    extensions: ExtensionManager

    @property
    def data_dir(self) -> Path: ...

    @property
    def plugins(self) -> PluginHost: ...

    @plugins.setter
    def plugins(self, host: PluginHost) -> None: ...

    def get_module(self, name: str) -> Module: ...

    def add_module(self, module: Module) -> Module: ...
