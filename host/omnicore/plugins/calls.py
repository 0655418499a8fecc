"""One call of a plugin: lease its version, ask its breaker, run, count.

:func:`call` is the whole path from ``app.plugins.call`` into the guest and back, for an entry
the host has already looked up; :func:`door_for` gives the entry's
:class:`~omnicore.plugins.door.CallDoor`, the one way in from async code.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from omnicore import telemetry
from omnicore.errors import (
    NeedsGrant,
    OmniError,
    PluginCompiling,
    PluginError,
    PluginLoadError,
    PluginNotFound,
)
from omnicore.plugins.door import CallDoor
from omnicore.plugins.versions import Entry, Version

if TYPE_CHECKING:
    pass

__all__ = ["call", "door_for", "not_callable"]


def call(entry: Entry, handler: str, data: bytes,
         run: Callable[[Entry, Version, bytes], bytes] | None = None, *,
         traced: bool = False) -> bytes:
    """Call ``handler`` of ``entry``'s current version with ``data``; return its output.

    ``run(entry, version, data)`` runs the call instead of the version's runtime (a reserved
    handler: ``plugins.commands.run_exec``), leased, counted and under the breaker alike.
    Raises the typed errors of :mod:`omnicore.errors`: NeedsGrant, HandlerNotFound,
    CircuitOpen, GuestError, Trap, the LimitExceeded family. ``traced``: the call's span is
    made (omnicore.telemetry calls back with it).
    """
    if telemetry.ON and not traced:  # while off, the one check (no frame is added)
        return telemetry.traced_call(call, entry, handler, data, run)
    version = entry.acquire()
    if version is None:
        raise not_callable(entry)
    try:
        entry.breaker.before_call(handler)
        start = time.perf_counter()
        try:
            out = version.runtime.call(handler, data) if run is None \
                else run(entry, version, data)
        except PluginError as exc:
            entry.stats.record(time.perf_counter() - start, exc)
            entry.breaker.record(exc)
            entry.last_error = str(exc)
            raise
        except BaseException:
            # Not the plugin's doing (bad argument, KeyboardInterrupt): no verdict, but a
            # half-open probe slot must be given back or the breaker would stay stuck.
            entry.breaker.abandon()
            raise
        entry.stats.record(time.perf_counter() - start)
        entry.breaker.record_success()
        return out
    finally:
        entry.release(version)


def not_callable(entry: Entry) -> OmniError:
    """Why ``entry`` has no version to call: it needs a grant, is disabled, is compiling, or
    failed."""
    if entry.state == "needs-grant":
        missing = ", ".join(f"omnicore:{m}" for m in entry.missing)
        return NeedsGrant(
            f"plugin '{entry.name}' needs grant: {missing}; grant it in its sidecar, the "
            f"app config (plugins.{entry.name}.grants) or with --grant",
            plugin=entry.name, missing=entry.missing)
    if entry.state == "disabled":
        return PluginNotFound(f"plugin '{entry.name}' is disabled (enabled: false)",
                              plugin=entry.name)
    if entry.state == "compiling":
        return PluginCompiling(f"plugin '{entry.name}' is still compiling (the host started "
                               "moments ago); call it again in a moment", plugin=entry.name)
    return PluginLoadError(f"plugin '{entry.name}' failed to load: {entry.last_error}",
                           plugin=entry.name)


def door_for(entry: Entry, *, default_size: int, max_workers: int,
             lock: threading.RLock) -> CallDoor:
    """``entry``'s door for ``acall`` (made on first use, under ``lock``).

    As wide as its instance pool, capped by ``max_workers``: more threads could only wait for
    an instance, and fewer would let one plugin's spinning calls hold threads another plugin
    needs.
    """
    door = entry.door
    if door is None:
        with lock:
            door = entry.door
            if door is None:
                version = entry.version
                size = version.runtime.limits.pool_size if version else default_size
                door = entry.door = CallDoor(entry.name, min(size, max_workers))
    return door
