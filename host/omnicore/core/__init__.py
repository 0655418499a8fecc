"""The core layer: lifecycle, modules, the event bus, runtime identity (the app that wires them
is :mod:`omnicore.app`, above every layer)."""

from __future__ import annotations

from omnicore.core.events import Event, EventBus, Subscription
from omnicore.core.lifecycle import Lifecycle, State
from omnicore.core.module import Module

__all__ = ["Event", "EventBus", "Lifecycle", "Module", "State", "Subscription"]
