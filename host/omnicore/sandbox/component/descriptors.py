"""A bound on the host descriptors a component holds open in its granted directories.

wasmtime's ``wasi:filesystem`` opens one host descriptor for every file or directory the
guest opens, bounded only by the process's ``RLIMIT_NOFILE`` (measured with a Python plugin:
about 25 µs an open, 6,000 in 134 ms: one call could take every descriptor of the host
process). wasmtime-py has no hook on an open, so while an instance of a component with
granted directories runs, its store's epoch deadline comes every tick and
:class:`DescriptorWatch` counts the descriptors of the process open in those directories
(``/proc/self/fd``): past the bound the call traps, the runtime reports
``LimitExceeded(limit="open_descriptors")``, and its instance is discarded, which closes them.
The same callback ends the call at its deadline, as the store's plain deadline does for
other components. Between two ticks (``epoch_tick_ms``) a guest can open a few hundred more.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Sequence
from ctypes import c_void_p
from typing import Any

import wasmtime

from omnicore.sandbox._wasmtime import CAPI, error_raw, set_epoch_deadline_callback
from omnicore.sandbox.deadline import arm
from omnicore.sandbox.engine import SandboxEngine

__all__ = ["DescriptorWatch", "open_in"]

#: WASMTIME_UPDATE_DEADLINE_CONTINUE: go on with the deadline moved by ``*delta``.
_CONTINUE = 0
#: wasmtime's epoch deadline callback: (context, env, *delta, *kind) -> error or NULL.
_CALLBACK_TYPE = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.POINTER(CAPI.wasmtime_context_t),
                                  c_void_p, ctypes.POINTER(ctypes.c_uint64),
                                  ctypes.POINTER(CAPI.wasmtime_update_deadline_kind_t))


def open_in(dirs: Sequence[int]) -> int:
    """Descriptors of this process open on the directories held by ``dirs`` (descriptors
    of them) or anything beneath them, ``dirs`` themselves included."""
    fds = os.listdir("/proc/self/fd")
    roots = []
    for fd in dirs:
        try:
            roots.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            continue
    prefixes = tuple(r.rstrip("/") + "/" for r in roots)
    n = 0
    for name in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:  # closed meanwhile, or this listing's own descriptor
            continue
        if target in roots or target.startswith(prefixes):
            n += 1
    return n


@ctypes.CFUNCTYPE(None, c_void_p)  # type: ignore[untyped-decorator]
def _no_finalizer(_env: int | None) -> None:
    return None


class DescriptorWatch:
    """The epoch callback of one store: ends a call at its deadline, or when the
    directories hold more than ``limit`` descriptors (then :attr:`over` is true)."""

    def __init__(self, engine: SandboxEngine, dirs: Sequence[int], limit: int,
                 ticks: int) -> None:
        self.engine = engine
        self.dirs = tuple(dirs)
        self.limit = limit
        self.ticks = ticks
        self.start = engine.epoch
        #: Whether this call was ended for holding too many descriptors.
        self.over = False
        #: Descriptors of the process outside the directories, at the last reading.
        self._elsewhere = 0
        # Kept here: wasmtime holds only its address, for as long as the store lives.
        self._callback = _CALLBACK_TYPE(self._on_deadline)

    def install(self, store: wasmtime.Store) -> None:
        """Make this the epoch callback of ``store`` (before anything runs in it)."""
        set_epoch_deadline_callback(store, self._callback, _no_finalizer)

    def arm(self, store: wasmtime.Store) -> None:
        """Start a call (or an instantiation): its deadline counts from now (with the ticks
        a late ticker owes), the store's own comes every tick (the deadline's door)."""
        self.start = arm(self.engine, store, self.ticks, every_tick=True)
        self.over = False

    def exceeded(self) -> bool:
        """Whether the directories hold more than the limit now (then :attr:`over` is set).
        Checked every tick of a call and when it returns: calls shorter than a tick could
        otherwise pile descriptors up in a pooled instance."""
        # Listing the process's descriptors is cheap (30-120 µs measured on a loaded
        # machine); reading where each points costs ~4 µs a descriptor (1.2 ms for 300). So
        # the directories' count is read only when the process holds more than the limit
        # beyond what was elsewhere at the last reading (the host closing descriptors of its
        # own meanwhile is the only slack).
        total = len(os.listdir("/proc/self/fd"))
        if total - self._elsewhere > self.limit:
            mine = open_in(self.dirs)
            self._elsewhere = total - mine
            self.over = mine > self.limit
        return self.over

    def _on_deadline(self, _context: Any, _env: Any, delta: Any, kind: Any) -> int:
        try:
            if self.engine.epoch - self.start >= self.ticks:
                return _error("the call's deadline passed")
            if self.exceeded():
                return _error(f"more than {self.limit} descriptors open in the granted "
                              "directories")
            delta[0] = 1
            kind[0] = _CONTINUE
            return 0
        except Exception as exc:  # wasmtime must get an answer: end the call
            return _error(f"descriptor watch failed: {type(exc).__name__}: {exc}")


def _error(message: str) -> int:
    return error_raw(message)
