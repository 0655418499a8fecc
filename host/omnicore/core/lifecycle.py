"""The lifecycle state machine shared by the app and its modules."""

from __future__ import annotations

import threading
from collections.abc import Callable
from enum import StrEnum

from omnicore.errors import LifecycleError

__all__ = ["Lifecycle", "State"]


class State(StrEnum):
    """Where an app or a module is in its life."""

    CREATED = "created"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


# Stopped is terminal: restarting would have to rebuild the task engine, the loop and every
# module's resources, and a fresh OmniApp does that more honestly.
_ALLOWED: dict[State, frozenset[State]] = {
    State.CREATED: frozenset({State.STARTING}),
    State.STARTING: frozenset({State.RUNNING, State.FAILED}),
    State.RUNNING: frozenset({State.STOPPING, State.FAILED}),
    State.STOPPING: frozenset({State.STOPPED, State.FAILED}),
    State.FAILED: frozenset({State.STOPPED}),
    State.STOPPED: frozenset(),
}

_VERB = {
    State.STARTING: "start",
    State.RUNNING: "mark running",
    State.STOPPING: "stop",
    State.STOPPED: "mark stopped",
    State.FAILED: "mark failed",
}

Listener = Callable[[State, State], None]


class Lifecycle:
    """A thread-safe state holder that only allows the transitions in the table above."""

    __slots__ = ("_listeners", "_lock", "_state", "subject")

    def __init__(self, subject: str, listener: Listener | None = None) -> None:
        self.subject = subject
        self._state = State.CREATED
        self._lock = threading.Lock()
        self._listeners: tuple[Listener, ...] = (listener,) if listener else ()

    @property
    def state(self) -> State:
        """The current state."""
        return self._state

    def can(self, new: State) -> bool:
        """Whether moving to ``new`` is allowed now."""
        return new in _ALLOWED[self._state]

    def transition(self, new: State) -> State:
        """Move to ``new`` and return the old state; raise :class:`LifecycleError` if invalid."""
        with self._lock:
            old = self._state
            if new not in _ALLOWED[old]:
                raise LifecycleError(self._refusal(old, new))
            self._state = new
        for listener in self._listeners:
            listener(old, new)
        return old

    def _refusal(self, old: State, new: State) -> str:
        verb = _VERB.get(new, str(new))
        if new is State.STARTING and old is State.RUNNING:
            why = "it is already running"
        elif new is State.STARTING and old is State.STOPPED:
            why = "it has been stopped (create a new one to start again)"
        elif new is State.STOPPING and old is State.CREATED:
            why = "it was never started"
        elif new is State.STOPPING and old is State.STOPPED:
            why = "it is already stopped"
        else:
            why = f"it is {old.value}"
        return f"cannot {verb} {self.subject}: {why}"
