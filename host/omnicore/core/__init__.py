"""The core layer: OmniApp, lifecycle, modules, the event bus, runtime identity."""

from __future__ import annotations

from typing import Any

from omnicore.core.events import Event, EventBus, Subscription
from omnicore.core.lifecycle import Lifecycle, State
from omnicore.core.module import Module

__all__ = ["Event", "EventBus", "Lifecycle", "Module", "OmniApp", "State", "Subscription"]


def __getattr__(name: str) -> Any:
    # OmniApp is the composition root above every layer: resolved on first use only.
    if name == "OmniApp":
        from omnicore.core.app import OmniApp

        return OmniApp
    raise AttributeError(f"module 'omnicore.core' has no attribute {name!r}")
