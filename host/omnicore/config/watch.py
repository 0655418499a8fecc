"""Following files on disk: the one watcher loop of the plugin folder and the config file.

:func:`follow` calls ``sync`` after each batch of file events under ``path`` that
``interesting`` keeps, and also every ``timeout_ms`` without any: ``sync`` compares the disk
with what it holds, so a lost or merged event never leaves the caller out of step. Where file
events are unavailable (inotify instances exhausted, some container volume mounts) it polls.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Literal

__all__ = ["POLL_INTERVAL_S", "Mode", "follow"]

log = logging.getLogger("omnicore.config.watch")

#: Rescan period when file events are unavailable.
POLL_INTERVAL_S = 0.25

#: How a path is followed: "idle" (not watched), "events" or "polling".
Mode = Literal["idle", "events", "polling"]


def follow(path: Path, interesting: Callable[[str], bool], sync: Callable[[], object],
           stop: threading.Event, *, label: str, debounce_ms: int = 50, step_ms: int = 20,
           timeout_ms: int = 500, mode: Callable[[Mode], None] = lambda _m: None) -> None:
    """Call ``sync`` on changes to the files of folder ``path`` whose name ``interesting``
    keeps, until ``stop`` is set (run it on a thread of its own); ``mode`` hears how."""
    import watchfiles  # here: resolving a plugin name (`omnicore call`) needs no watcher

    def keep(_change: watchfiles.Change, name: str) -> bool:
        return interesting(name)

    mode("events")
    try:
        for _batch in watchfiles.watch(
                path, watch_filter=keep, debounce=debounce_ms, step=step_ms,
                stop_event=stop, rust_timeout=timeout_ms, yield_on_timeout=True,
                recursive=False, raise_interrupt=False):
            sync()
    except Exception as exc:
        log.warning("%s: file events unavailable (%s); polling every %.2fs instead", label,
                    exc, POLL_INTERVAL_S)
        mode("polling")
        while not stop.wait(POLL_INTERVAL_S):
            try:
                sync()
            except Exception:
                log.exception("%s: rescan failed", label)
    finally:
        mode("idle")
