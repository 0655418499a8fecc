"""The deadline's door: the one function through which Python arms a call's epoch deadline.

Every path arms its store's deadline here (core calls and starts on the Python path, component
calls and starts, Extism instances, WASI commands, the test host), and the C paths through its
twin, ``deadline_arm`` in ``sandbox/_deadline.h``; ``tests/sandbox/test_deadline_door.py``
fails when another module arms one or reads the ticks owed. The rule both follow
(specs/host.md, "Deadlines"):

    a deadline ``ticks`` from now is armed ``ticks + owed`` past the engine's epoch, where
    ``owed`` is every tick the ticker owes at that moment (0 unless it runs late; one owed
    tick counts as much as many).

Why owed ticks count: the ticker is a thread like any other, and runs late (the Python one
starved of the GIL, the C one descheduled on a loaded machine); when it runs again it adds
every period it missed at once, so a deadline armed meanwhile from the epoch alone would end
its call early by the lag (seen: 22 ms of a 200 ms deadline on a loaded 2-core CI machine).
"""

from __future__ import annotations

from typing import Any, Protocol

from omnicore.sandbox._wasmtime import set_epoch_deadline as _set_deadline

__all__ = ["Clock", "arm"]


class Clock(Protocol):
    """What a deadline is armed from: a :class:`~omnicore.sandbox.engine.SandboxEngine`."""

    def epoch_and_owed(self) -> tuple[int, int]: ...


def arm(clock: Clock | None, store: Any, ticks: int, armed: int = -1, *,
        every_tick: bool = False) -> int:
    """Arm ``store``'s epoch deadline ``ticks`` ticks from now; the moment armed at (the
    epoch + the ticks owed), for the next call's ``armed``.

    ``store``: a store context's address (the core paths, Extism) or a ``wasmtime.Store``
    (components). ``clock``: the engine (None: an engine without a ticker of ours, as the test
    host's may be: nothing owed). ``armed``: the moment of this store's last arm; while it is
    now's, the deadline in place is the one this arm would set and is not set again (-1:
    arm). ``every_tick``: the store's epoch callback keeps the call's deadline (a descriptor
    watch), so the store's own comes at the next tick and the callback counts from the moment
    returned."""
    epoch, owed = (0, 0) if clock is None else clock.epoch_and_owed()
    now = epoch + owed
    if now != armed:
        delta = 1 if every_tick else ticks + owed
        if store.__class__ is int:
            _set_deadline(store, delta)
        else:
            store.set_epoch_deadline(delta)
    return now
