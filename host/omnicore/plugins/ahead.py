"""Compiling a folder's files ahead, in parallel, smallest first.

A host starting on an empty module cache spends nearly all its time compiling (16 demo
plugins: about 12.6 s of CPU, a 3 MB Go module alone about 2 s). The folder still loads its
files one by one, so that names, duplicates and failures are decided in one order; what runs
ahead is the compile, on a pool as wide as the CPUs this process may use. wasmtime compiles
with the GIL released (a ctypes call), so threads compile side by side. Files are submitted
smallest first: the small plugins serve within moments while the big ones still compile, and
each compile writes the engine's module cache as any compile does.

A compiled module is handed over only for the very file it was compiled from (same inode,
size and mtime); anything else, or a compile that failed, is compiled again by the load,
which reports its error as usual.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from omnicore.filestamp import Stamp, stamp_of
from omnicore.sandbox.compiled import CompiledPlugin

__all__ = ["CompileAhead", "workers"]

log = logging.getLogger("omnicore.plugins.host")



def workers() -> int:
    """How many compiles run at once: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _identity(path: Path) -> Stamp | None:
    return stamp_of(path)


class CompileAhead:
    """Compiles submitted files on a thread pool; :meth:`take` hands a result over once."""

    def __init__(self, compile_file: Callable[[Path], CompiledPlugin]) -> None:
        self._compile = compile_file
        self._lock = threading.Lock()
        self._pending: dict[Path, tuple[Stamp | None, Future[CompiledPlugin]]] = {}
        self._running = 0
        self._idle = threading.Condition(self._lock)

    def submit(self, paths: Iterable[Path]) -> list[Path]:
        """Start compiling ``paths``, smallest first; return them in that order."""
        paths = list(paths)
        sized = [(ident, path) for path in paths if (ident := _identity(path)) is not None]
        order = [path for _, path in sorted(sized, key=lambda item: (item[0][0], item[1]))]  # size
        order += [path for path in paths if path not in order]  # gone: the load says so
        if len(order) < 2:
            return order
        pool = ThreadPoolExecutor(max_workers=min(workers(), len(order)),
                                  thread_name_prefix="omnicore-compile")
        futures = []
        with self._lock:
            for path in order:
                self._running += 1
                future = pool.submit(self._compile, path)
                futures.append(future)
                self._pending[path] = (_identity(path), future)
        # Outside the lock: a compile that already finished runs its callback right here,
        # and _done takes the same (non-reentrant) lock: under it, that deadlocked the host.
        for future in futures:
            future.add_done_callback(self._done)
        pool.shutdown(wait=False)  # the threads end when the queue is empty
        return order

    def _done(self, _future: Future[CompiledPlugin]) -> None:
        with self._idle:
            self._running -= 1
            if self._running == 0:
                self._idle.notify_all()

    def wait_idle(self) -> None:
        """Return once no compile submitted here is queued or running."""
        with self._idle:
            self._idle.wait_for(lambda: self._running == 0)

    def take(self, path: Path) -> CompiledPlugin | None:
        """The module compiled ahead from ``path`` as it is now (waiting for it), or None."""
        with self._lock:
            found = self._pending.pop(path, None)
        if found is None:
            return None
        ident, future = found
        try:
            module = future.result()
        except Exception:
            return None  # the load compiles it again and reports the error
        return module if ident is not None and ident == _identity(path) else None

    def cancel(self) -> None:
        """Drop every compile not started yet (the host is closing)."""
        with self._lock:
            pending, self._pending = self._pending, {}
        for _, future in pending.values():
            future.cancel()
