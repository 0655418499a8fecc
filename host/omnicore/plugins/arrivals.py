"""Plugins on their way in: the one place a call waits for its plugin to load.

A host serves before its plugins have loaded (a start loads the folder in the background,
a file dropped in loads on the watcher's thread), so a call may name a plugin that is still
``compiling``, or one not in the table yet while the folder is still being loaded. Every call
path reaches :class:`~omnicore.plugins.host.PluginHost`'s ``call``, ``acall`` or ``submit``,
and each of them asks :class:`Arrivals` first when the plugin has no version serving: the
call waits here until the plugin has *settled* (loaded, needs a grant, disabled, failed: what
it then answers is what that state answers) or the folder's load ended without it (no such
plugin), bounded by the call's wait (``sandbox.load_wait_ms``, or the caller's own), past
which it fails with :class:`~omnicore.errors.PluginCompiling`. A plugin that serves costs the
call one attribute read: the host asks only when ``entry.version`` is None.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from omnicore.errors import PluginCompiling

if TYPE_CHECKING:
    from omnicore.plugins.entries import Entries
    from omnicore.plugins.versions import Entry

__all__ = ["Arrivals"]


class Arrivals:
    """Waits for plugins to settle; woken by every change of the table (:meth:`changed`)."""

    def __init__(self, entries: Entries, wait_s: float) -> None:
        self._entries = entries
        self._cond = threading.Condition(entries.lock)
        self._loading = 0
        #: Of those, the loads of a start (its folder's first read, and the moments before).
        self._starting = 0
        self._wakers: set[Callable[[], None]] = set()
        #: Calls waiting here now.
        self.waiting = 0
        #: How long a call waits for its plugin by default (``sandbox.load_wait_ms``).
        self.wait_s = wait_s
        entries.on_change = self.changed

    @property
    def loading(self) -> bool:
        """Whether files are being loaded now (a name unknown yet may still arrive)."""
        return self._loading > 0

    @property
    def starting(self) -> bool:
        """Whether a load of a start is under way (:meth:`wait_started` would wait)."""
        return self._starting > 0

    @contextmanager
    def load(self, *, start: bool = False) -> Iterator[None]:
        """Mark a load of files under way for its duration (see :meth:`begin`)."""
        self.begin(start=start)
        try:
            yield
        finally:
            self.end(start=start)

    def begin(self, *, start: bool = False) -> None:
        """Files are being loaded: a call to a name not in the table waits (:meth:`end`).
        ``start``: the load of a start (:meth:`wait_started` waits for it), not a drop."""
        with self._cond:
            self._loading += 1
            self._starting += start

    def end(self, *, start: bool = False) -> None:
        """A load :meth:`begin` marked is over."""
        with self._cond:
            self._loading -= 1
            self._starting -= start
        self.changed()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no load is under way; False if ``timeout`` ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._loading == 0, timeout)

    def wait_started(self, timeout: float | None = None) -> bool:
        """Block until no load of a start is under way (a file dropped in later, still
        compiling, is not waited for); False if ``timeout`` ran out first."""
        with self._cond:
            return self._cond.wait_for(lambda: self._starting == 0, timeout)

    def changed(self) -> None:
        """The table or a plugin's state changed: every waiter looks again."""
        with self._cond:
            self._cond.notify_all()
            wakers = list(self._wakers)
        for wake in wakers:
            wake()

    def _settled(self, name: str) -> tuple[bool, Entry | None]:
        entry = self._entries.get(name)
        if entry is not None:
            return entry.state != "compiling", entry
        return self._loading == 0, None

    def _late(self, name: str, waited: float) -> PluginCompiling:
        return PluginCompiling(
            f"plugin '{name}' is still loading: waited {waited * 1000:.0f} ms for it "
            f"(sandbox.load_wait_ms, or the call's own deadline); call it again in a moment",
            plugin=name)

    def _found(self, name: str, entry: Entry | None) -> Entry:
        if entry is None:
            raise self._entries.not_found(name)
        return entry

    def wait(self, name: str, wait_s: float | None = None) -> Entry:
        """The entry of ``name`` once it has settled, waiting up to ``wait_s`` (default
        :attr:`wait_s`) on this thread; :class:`PluginCompiling` past that,
        :class:`~omnicore.errors.PluginNotFound` when no load brings it."""
        limit = self.wait_s if wait_s is None else wait_s
        deadline = time.monotonic() + limit
        with self._cond:
            done, entry = self._settled(name)
            if done:
                return self._found(name, entry)
            self.waiting += 1
            try:
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise self._late(name, limit)
                    self._cond.wait(left)
                    done, entry = self._settled(name)
                    if done:
                        return self._found(name, entry)
            finally:
                self.waiting -= 1

    async def arrive(self, name: str, wait_s: float | None = None) -> Entry:
        """:meth:`wait` on the running event loop, holding no thread while it waits."""
        limit = self.wait_s if wait_s is None else wait_s
        done, entry = self._settled(name)
        if not done:
            if not await self._until(lambda: self._settled(name)[0], limit, call=True):
                raise self._late(name, limit)
            entry = self._settled(name)[1]
        return self._found(name, entry)

    async def started(self, wait_s: float | None = None) -> bool:
        """:meth:`wait_started` on the running event loop: True once no load of a start is
        under way, False when ``wait_s`` (default :attr:`wait_s`) ran out first."""
        if not self.starting:
            return True
        return await self._until(lambda: self._starting == 0,
                                 self.wait_s if wait_s is None else wait_s, call=False)

    async def _until(self, ready: Callable[[], bool], limit: float, *, call: bool) -> bool:
        """Wait on the loop, woken by every change, until ``ready()``: False when ``limit``
        seconds ran out first. ``call``: a call waits (counted in :attr:`waiting`)."""
        import asyncio  # here: a process that never calls from async code need not load it

        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        woken = asyncio.Event()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(woken.set)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        with self._cond:
            self._wakers.add(wake)
            self.waiting += call
        try:
            while True:
                woken.clear()
                if ready():  # after clear(): no wake-up is missed
                    return True
                left = deadline - loop.time()
                if left <= 0:
                    return False
                try:
                    async with asyncio.timeout(left):
                        await woken.wait()
                except TimeoutError:
                    pass
        finally:
            with self._cond:
                self._wakers.discard(wake)
                self.waiting -= call
