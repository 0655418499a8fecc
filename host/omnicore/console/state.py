"""What every console request needs: the app, auth, the live feed, the call-rate history."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from omnicore.console.auth import Auth
from omnicore.console.guard import LOCAL_NAMES, HostPolicy
from omnicore.console.live import LiveFeed
from omnicore.console.pulse import Pulse

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["ConsoleState", "RateHistory"]

T = TypeVar("T")


class RateHistory:
    """Calls and errors of all plugins, sampled every ``period_s`` (the overview's chart)."""

    def __init__(self, period_s: float = 10.0, keep: int = 180) -> None:
        self.period_s = period_s
        self._samples: deque[tuple[float, int, int]] = deque(maxlen=keep)

    def sample(self, app: OmniApp) -> None:
        calls = errors = 0
        for _name, stats in app.plugins.stats_items():
            snap = stats.snapshot()
            calls += snap.calls
            errors += snap.errors
        self._samples.append((time.time(), calls, errors))

    def per_minute(self) -> list[tuple[float, float, float]]:
        """``(time, calls/min, errors/min)`` between consecutive samples."""
        out = []
        items = list(self._samples)
        for (t0, c0, e0), (t1, c1, e1) in itertools.pairwise(items):
            span = max(t1 - t0, 1e-3) / 60
            out.append((t1, max(c1 - c0, 0) / span, max(e1 - e0, 0) / span))
        return out


@dataclass
class ConsoleState:
    app: OmniApp
    auth: Auth
    feed: LiveFeed = field(default_factory=LiveFeed)
    max_upload_bytes: int = 64 * 1024 * 1024
    history: RateHistory = field(default_factory=RateHistory)
    hosts: HostPolicy = field(default_factory=lambda: HostPolicy(LOCAL_NAMES))
    body_timeout_s: float = 30.0
    #: The live figures every page's stream sends (``/api/v1/live``).
    pulse: Pulse = field(init=False)

    def __post_init__(self) -> None:
        self.pulse = Pulse(self.app)

    async def off_loop(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run blocking work (file writes, compiling a plugin, SQLite) off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, partial(fn, *args, **kwargs))
