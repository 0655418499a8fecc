"""The heap a host process settles into: what it keeps for its life, out of the collector's
full walks.

A started host holds about a million objects it keeps until it stops (imported modules,
configuration, compiled plugins' Python sides). CPython's full collection walks all of them,
100-150 ms on a two-core machine, and a host whose requests leave objects alive for a moment
(spans waiting for their export batch, rows in a cache) meets one every few tens of thousands
of requests: a traced REST invoke paid about 5 us a request for it (issue 62). :func:`settle`
collects what is garbage now and moves the rest to the permanent generation (``gc.freeze``),
which full collections skip: one then walked 13 ms.

What was frozen and becomes garbage later (a plugin version replaced, its runtime in a
reference cycle) waits for the next settle, which unfreezes first, so it is collected then.
Settling happens where a host's heap has just changed for good: the end of a folder's load and
of a tier-up round.

The heap is the process's, not the library's: only the process's owner turns this on
(:func:`manage`; ``omnicore run`` does). An application that embeds a host keeps its own
collector policy, and settle is a no-op there.
"""

from __future__ import annotations

import gc
import threading

__all__ = ["manage", "managed", "settle"]

_lock = threading.Lock()
_managed = False


def manage(on: bool = True) -> None:
    """Let :func:`settle` freeze this process's heap (the process's owner decides)."""
    global _managed
    _managed = on
    if not on:
        gc.unfreeze()


def managed() -> bool:
    return _managed


def settle() -> bool:
    """Collect what is garbage now and freeze the rest (a full walk: call it where the heap
    has just changed for good, never per request). False when the heap is not managed."""
    if not _managed:
        return False
    with _lock:
        gc.unfreeze()
        gc.collect()
        gc.freeze()
    return True
