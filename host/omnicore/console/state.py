"""What every console request needs: the app, auth, the live feed, the charts' history."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from omnicore.console.auth import Auth
from omnicore.console.guard import LOCAL_NAMES, HostPolicy
from omnicore.console.live import LiveFeed
from omnicore.console.pulse import Pulse
from omnicore.console.series import Series

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["ConsoleState"]

T = TypeVar("T")


@dataclass
class ConsoleState:
    app: OmniApp
    auth: Auth
    feed: LiveFeed = field(default_factory=LiveFeed)
    max_upload_bytes: int = 64 * 1024 * 1024
    history: Series = field(default_factory=Series)
    hosts: HostPolicy = field(default_factory=lambda: HostPolicy(LOCAL_NAMES))
    body_timeout_s: float = 30.0
    #: The live figures every page's stream sends (``/api/v1/live``).
    pulse: Pulse = field(init=False)

    def __post_init__(self) -> None:
        self.pulse = Pulse(self.app, history=self.history)

    async def off_loop(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking work (file writes, compiling a plugin, SQLite) off the event loop."""
        loop = asyncio.get_running_loop()
        # In the request's context: its trace continues in what the work does (a job queued).
        return await loop.run_in_executor(None, contextvars.copy_context().run,
                                          partial(fn, *args, **kwargs))
