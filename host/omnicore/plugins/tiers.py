"""Two tiers of compiled code for a host starting on an empty module cache.

Cranelift makes fast code slowly: the 16 demo plugins take about 12.6 s of CPU, so on two cores
no amount of parallelism serves them all within a few seconds. Winch, wasmtime's baseline
compiler, takes about 1.6 s for the same modules. So a file compiled ahead at start
(:mod:`omnicore.plugins.ahead`) whose module is not in the cache is compiled by Winch first and
serves at once; :class:`TierUp` then compiles it with Cranelift, one module at a time on a
thread of its own (writing the module cache, so the next start is a cached one), and swaps the
plugin to that code as a reload does: calls in flight finish on the Winch runtime, new calls
get the Cranelift one. Winch's code is cached until then (a start that ends first leaves it to
the next one, which loads it rather than compiling it again) and its entry deleted at the swap.
A plugin reloaded, regranted into a new module or unloaded meanwhile is left as it is.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

from omnicore.core import heap
from omnicore.errors import OmniError
from omnicore.plugins.versions import Entry
from omnicore.sandbox import modcache
from omnicore.sandbox.compiled import CompiledPlugin

__all__ = ["TierUp"]

log = logging.getLogger("omnicore.plugins.host")

#: ``swap(entry, baseline_module, optimized_module)``: relink ``entry`` to the optimized
#: module if it still runs the baseline one.
Swap = Callable[[Entry, CompiledPlugin, CompiledPlugin], None]


class TierUp:
    """Which modules are baseline code, and the thread that replaces them."""

    def __init__(self, compile_optimized: Callable[[Path, str], CompiledPlugin], swap: Swap, *,
                 after: Callable[[], None],
                 replaced: Callable[[CompiledPlugin], None] = lambda module: None) -> None:
        self._compile = compile_optimized
        self._swap = swap
        #: Called with a baseline module whose optimized code is compiled, before the swap:
        #: its cache entry goes (plugins.linking).
        self._replaced = replaced
        # Waits until the first tier is done: Cranelift taking CPU from the Winch compiles
        # would delay the plugins still waiting for any code at all.
        self._after = after
        self._baseline: weakref.WeakSet[CompiledPlugin] = weakref.WeakSet()
        self._queue: queue.SimpleQueue[tuple[Entry, CompiledPlugin] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def mark(self, module: CompiledPlugin) -> CompiledPlugin:
        """Record ``module`` as baseline code (to be replaced once linked)."""
        self._baseline.add(module)
        return module

    def is_baseline(self, module: CompiledPlugin) -> bool:
        """Whether ``module`` was compiled by the baseline compiler."""
        return module in self._baseline

    def submit(self, entry: Entry, module: CompiledPlugin) -> None:
        """Compile ``entry``'s file with the optimizing compiler, then swap ``module`` out."""
        with self._lock:
            if self._closed:
                return
            if self._thread is None:
                # A daemon: a Cranelift compile still running must not hold the process at exit.
                self._thread = threading.Thread(target=self._run, name="omnicore-tier-up",
                                                daemon=True)
                self._thread.start()
        self._queue.put((entry, module))

    def close(self) -> None:
        """Stop replacing modules (the host is closing); queued ones are dropped."""
        with self._lock:
            self._closed = True
        self._queue.put(None)

    def _run(self) -> None:
        while (job := self._queue.get()) is not None and not self._closed:
            entry, module = job
            self._after()
            if self._closed:
                return  # closed while the first tier compiled: no Cranelift for a stopped host
            if entry.module is not module or entry.source is None:
                continue  # reloaded or regranted into another module meanwhile
            try:
                # By the baseline module's name: a catalog's plugin may be published under
                # another name than its manifest's.
                optimized = self._compile(entry.source, module.name)
            except (OmniError, OSError) as exc:
                log.debug("plugin '%s': no optimized code (%s); the baseline code serves",
                          entry.name, exc)
                continue
            if optimized.sha256 == module.sha256 and not self._closed:
                self._swap_in(entry, module, optimized)
            del module, optimized, entry, job
            if self._queue.empty():
                # The last swap of a start: the baseline runtimes let go sit in reference
                # cycles, holding their code (the 20 smallest demo plugins: 49 MiB mapped) until
                # a full collection, which an idle host may not run for hours. One now, at the
                # end of the tier-up, not after each swap: it walks the whole heap (issue 63).
                # A host process that manages its heap freezes what is left (core/heap.py).
                if not heap.settle():
                    gc.collect()
            # The baseline code and its runtime are let go now: what malloc kept of them (and
            # of the compile) goes back to the system (issue 63).
            modcache.trim()

    def _swap_in(self, entry: Entry, module: CompiledPlugin, optimized: CompiledPlugin) -> None:
        try:
            self._replaced(module)
            # A start that crossed its deadline was tried once more (plugins.linking._link).
            self._swap(entry, module, optimized)
        except Exception:
            log.exception("plugin '%s': swapping in the optimized code failed; the baseline "
                          "code serves", entry.name)
