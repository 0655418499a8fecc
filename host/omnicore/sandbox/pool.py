"""The instance pool of one plugin runtime: up to ``size`` instances, made on demand.

Shared by the native runtime (``sandbox.runtime``) and the Extism one (``omnicore.extism``),
which differ in what an instance is, not in how instances are lent out.

The call path takes an idle instance with a bare ``idle.pop()`` and gives it back with
``idle.append()`` (both atomic under the GIL) when :attr:`~InstancePool.reuse` says so: the
condition is touched only when a caller waits, which is most of why a call costs about a
microsecond and a half and not more. So :attr:`idle` is one list for the pool's whole life;
it is never rebound.

Two policies change what "give it back" means:

* ``per_call`` (``limits.isolation: per-call``): nothing is reused; every call instantiates
  and its instance is freed after it, so no state of one call reaches the next.
* ``idle_s`` (``limits.idle_timeout_ms``): :meth:`InstancePool.sweep` (run by
  ``sandbox.idle.IdleReaper``) frees instances no call used for that long. It sets the idle
  ones aside ("parks" them) and frees those still parked a period later; a call that finds
  :attr:`idle` empty takes a parked one back on its slow path. The call path itself never
  reads a clock or writes a timestamp.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, Protocol, Self, TypeVar

from omnicore.errors import HandlerNotFound, PluginCallError, PluginLoadError, PluginNotFound
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.pluginlog import PluginLog

__all__ = ["InstancePool", "PooledRuntime"]


class _Closable(Protocol):
    def close(self) -> None: ...


Inst = TypeVar("Inst", bound=_Closable)


class InstancePool(Generic[Inst]):
    """Lends out instances of plugin ``name``; ``make(handler)`` creates one. ``limits``
    brings the isolation and idle policies (none: pooled, kept until closed)."""

    def __init__(self, name: str, size: int, make: Callable[[str | None], Inst],
                 on_drained: Callable[[], None] | None = None, *,
                 limits: Limits | None = None) -> None:
        self.name = name
        self.size = size
        per_call = limits is not None and limits.per_call
        self.per_call = per_call
        #: Whether a finished call's instance goes back to :attr:`idle` (not closed, not
        #: per-call): the one flag the call path reads.
        self.reuse = not per_call
        #: Seconds an instance may stay unused before :meth:`sweep` frees it (None: never).
        self.idle_s = (None if limits is None or per_call or limits.idle_timeout_ms is None
                       else limits.idle_timeout_ms / 1000)
        #: Instances :meth:`sweep` set aside, with when: freed unless a call takes them back.
        self._parked: list[tuple[float, Inst]] = []
        self._make = make
        # Called once the pool is closed and its last instance is gone (resources shared by
        # all instances, like the WASI output pipes, can go then).
        self._on_drained = on_drained
        self._cond = threading.Condition()
        #: Idle instances, for the call path's lock-free pop/append (never rebound).
        self.idle: list[Inst] = []
        self.live = 0
        #: Callers waiting for an instance: the call path notifies only when there are some.
        self.waiters = 0
        self.closed = False
        self.created = 0
        self.discarded = 0
        #: Instances freed by :meth:`sweep` for being idle.
        self.released = 0

    def seed(self) -> None:
        """Make the first instance now, so a plugin that cannot start fails at load
        (per-call: and free it again, as every call's instance is)."""
        inst = self._make(None)
        self.created += 1
        if self.per_call:
            inst.close()
            return
        self.idle.append(inst)
        self.live = 1

    def acquire(self, handler: str) -> Inst:
        """An idle instance, or a new one while under ``size``, or wait for one."""
        if self.reuse:  # (per-call: never an idle one to pop)
            try:
                return self.idle.pop()
            except IndexError:
                pass
        with self._cond:
            # Registering as a waiter *before* re-checking the idle list means a concurrent
            # release either is seen here or sees us and notifies.
            self.waiters += 1
            try:
                while True:
                    if self.closed:
                        raise PluginNotFound(f"plugin {self.name!r} was unloaded",
                                             plugin=self.name, handler=handler)
                    if self.idle:
                        return self.idle.pop()
                    if self._parked:
                        return self._parked.pop()[1]
                    if self.live < self.size:
                        self.live += 1
                        break
                    self._cond.wait(0.5)
            finally:
                self.waiters -= 1
        try:
            inst = self._make(handler)
        except BaseException:
            with self._cond:
                self.live -= 1
                self._cond.notify_all()
            raise
        self.created += 1
        return inst

    def release(self, inst: Inst, keep: bool) -> None:
        """Give ``inst`` back; ``keep=False`` discards it (after a trap or a limit).
        Per-call, a kept instance is freed too (without counting as discarded)."""
        if keep and self.reuse:
            self.idle.append(inst)
            if self.waiters:  # read after the append: see close() and acquire()
                self.notify()
            return
        with self._cond:
            self.live -= 1
            if not keep:
                self.discarded += 1
            inst.close()
            if self.waiters:  # waiters register under this lock: none can be missed
                self._cond.notify_all()
            drained = self.closed and self.live == 0
        if drained and self._on_drained is not None:
            self._on_drained()  # the call that outlived close() has ended

    def read_idle(self, inst: Inst, read: Callable[[Inst], int]) -> int | None:
        """``read(inst)`` with no call able to take ``inst`` meanwhile, if it is idle: in the
        idle list (taken out for the read, atomically, then given back) or parked by a
        :meth:`sweep` (read under the lock a call takes it back under). None: a call has it."""
        try:
            self.idle.remove(inst)  # atomic: ValueError if a caller has it, or a sweep parked it
        except ValueError:
            with self._cond:
                if any(parked is inst for _, parked in self._parked):
                    return read(inst)
            return None
        try:
            return read(inst)
        finally:
            self.release(inst, True)

    def notify(self) -> None:
        """Wake callers waiting for an instance."""
        with self._cond:
            self._cond.notify_all()

    def sweep(self, now: float) -> int:
        """Free the instances parked by a sweep at least ``idle_s`` before ``now`` (no call
        took them back since), park the ones idle now; return how many were freed."""
        if self.idle_s is None or self.closed:
            return 0
        with self._cond:
            if self.closed:
                return 0
            cutoff = now - self.idle_s
            old = [inst for when, inst in self._parked if when <= cutoff]
            self._parked = [(when, inst) for when, inst in self._parked if when > cutoff]
            while True:
                try:
                    self._parked.append((now, self.idle.pop()))
                except IndexError:
                    break
            self.live -= len(old)
            self.released += len(old)
            # Freed under the lock, as release() does: close() may otherwise see the pool
            # drained and run on_drained while these are still being freed.
            for inst in old:
                inst.close()
            if old:
                self._cond.notify_all()  # room under size for a waiting caller
        return len(old)

    def stats(self) -> dict[str, int]:
        """Live, idle and busy instances; created, discarded and idle-released totals."""
        with self._cond:
            idle = len(self.idle) + len(self._parked)
            return {"live": self.live, "idle": idle, "busy": self.live - idle,
                    "created": self.created, "discarded": self.discarded,
                    "released": self.released}

    def close(self, timeout: float | None = None) -> None:
        """Refuse new calls, wait for in-flight ones (up to ``timeout`` s), free instances."""
        with self._cond:
            self.closed = True
            self.reuse = False
            self.waiters += 1
            try:
                deadline = None if timeout is None else time.monotonic() + timeout
                # Short waits: a release racing with close() can never strand us.
                while len(self.idle) + len(self._parked) < self.live:
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        break
                    self._cond.wait(0.05 if left is None else min(left, 0.05))
            finally:
                self.waiters -= 1
            # Popped one by one, never copied and cleared: a caller that read ``reuse`` just
            # before it changed may still pop an idle instance (without this lock), and each
            # pop hands an instance to exactly one side; a copy could free one it holds.
            idle = [inst for _, inst in self._parked]
            self._parked = []
            while True:
                try:
                    idle.append(self.idle.pop())
                except IndexError:
                    break
            self.live -= len(idle)
            drained = self.live == 0
        for inst in idle:
            inst.close()
        if drained and self._on_drained is not None:
            self._on_drained()


class PooledRuntime(Generic[Inst]):
    """What a plugin runtime built on an :class:`InstancePool` (``self._pool``) exposes about
    it: counters, closing, use as a context manager; and what every runtime holds of its
    plugin (:meth:`_attach`)."""

    _pool: InstancePool[Inst]
    name: str
    limits: Limits
    log: PluginLog
    #: Of the runtimes whose calls name a handler and carry bytes (ABI v1, Extism): the
    #: plugin's handlers, ``limits.max_input_bytes``, and the words of HandlerNotFound.
    _handlers: frozenset[str]
    _max_input: int
    _NO_HANDLER = "plugin {plugin!r} has no handler {handler!r}; its handlers: {handlers}"

    @property
    def handlers(self) -> tuple[str, ...]:
        """The plugin's handler names."""
        raise NotImplementedError

    def _admitted(self, handler: str, data: bytes) -> bytes:
        """``data`` as the input of a call of ``handler``: ``bytes``, within
        ``limits.max_input_bytes``, for a handler the plugin has (else HandlerNotFound or
        InputTooLarge). A call checks the three inline and comes here only when one fails,
        so a call that passes them pays nothing more."""
        if handler not in self._handlers:
            raise HandlerNotFound(self._NO_HANDLER.format(
                plugin=self.name, handler=handler, handlers=", ".join(self.handlers) or "(none)"),
                plugin=self.name, handler=handler)
        if type(data) is not bytes:
            data = bytes(data)
        if len(data) > self._max_input:
            raise self.limits.input_too_large(
                len(data), f"plugin {self.name!r} handler {handler!r}", self.name, handler)
        return data

    def _attach(self, name: str, limits: Limits | None, log: PluginLog | None) -> None:
        """Hold plugin ``name``'s limits (default: :class:`Limits`) and its log (a new one
        unless given), which lets lines through at the limits' rates."""
        self.name = name
        self.limits = limits or Limits()
        self.log = log if log is not None else PluginLog(name)
        self.log.rate_bytes = self.limits.max_log_bytes_per_s
        self.log.rate_lines = self.limits.max_log_lines_per_s

    def _open_pool(self, make: Callable[[str | None], Inst],
                   on_drained: Callable[[], None] | None, *,
                   hollow: bool) -> InstancePool[Inst]:
        """Make this runtime's pool (``limits.pool_size`` instances by ``make``) and start one
        instance now: a plugin that cannot start fails at load (PluginLoadError, after
        ``on_drained`` freed what its instances would have shared), not at its first call.
        ``hollow``: the runtime's engine compiles hollow code (``omnicore inspect``), and none
        starts: its code runs nothing."""
        self._pool = InstancePool(self.name, self.limits.pool_size, make, on_drained,
                                  limits=self.limits)
        if hollow:
            return self._pool
        try:
            self._pool.seed()
        except (PluginCallError, PluginLoadError) as exc:
            if on_drained is not None:
                on_drained()
            if isinstance(exc, PluginLoadError):
                raise
            # Chained: whoever retries a start tells a stall (DeadlineExceeded) from a fault.
            raise PluginLoadError(f"plugin {self.name!r} failed to start: {exc}",
                                  plugin=self.name) from exc
        return self._pool

    def _release(self, inst: Inst, keep: bool) -> None:
        self._pool.release(inst, keep)

    def stats(self) -> dict[str, int]:
        """Pool counters: live, idle, busy instances; created and discarded totals."""
        return self._pool.stats()

    @property
    def instances_created(self) -> int:
        return self._pool.created

    @property
    def instances_discarded(self) -> int:
        return self._pool.discarded

    def close(self, timeout: float | None = None) -> None:
        """Refuse new calls, wait for in-flight ones (up to ``timeout`` s), free instances."""
        self._pool.close(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
