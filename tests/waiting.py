"""Waiting for what a test cannot make happen at once: one poll with a deadline for the suite
(:func:`eventually`; :func:`eventually_async` is the same wait inside an event loop).

The deadline only catches "never": it is far above what a loaded 2-core machine running
several workers needs, so waiting does not make a test timing-sensitive (a test that asserts
promptness measures the time :func:`eventually` returns with :func:`seconds_until`, against a
bound of its own). A process the wait depends on (a host under test) is watched too: the wait
fails as soon as it exits, with its log's tail, instead of at the deadline.

A bound on how soon something ends (a call at its deadline, not after the 10 s its guest
sleeps) is held by the fastest of a few runs (:func:`fastest`): a loaded machine stretches one
run by seconds now and then, which is the machine's; a bound not kept fails every run.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, TypeVar

__all__ = ["Logged", "all_threads_stopped", "busy_share", "eventually", "eventually_async",
           "seconds_until"]

T = TypeVar("T")

#: Long enough for a cluster of hosts to start on a loaded machine; short of pytest's timeout.
TIMEOUT_S = 90.0
#: Between two checks. A check often runs beside the host it waits on, in the same process (a
#: store read, a scan of log records under the logging lock): polled faster, on a machine
#: whose cores the test workers already fill, it takes the GIL and the locks from the very
#: threads it waits for (an outage test's deliveries missed 90 s polled every 10 ms).
EVERY_S = 0.05


class _Host(Protocol):
    """A process with its log (tests/hosts.py's Host, :class:`Logged`)."""

    @property
    def proc(self) -> subprocess.Popen[Any] | None: ...

    @property
    def log(self) -> Path: ...


@dataclass(frozen=True)
class Logged:
    """A process and the file its output goes to, to watch while waiting on it."""

    proc: subprocess.Popen[Any]
    log: Path


Watched = subprocess.Popen[Any] | _Host


def _exited(item: Watched, ok_exits: Sequence[int]) -> str | None:
    proc = item if isinstance(item, subprocess.Popen) else item.proc
    if proc is None or proc.poll() is None or proc.returncode in ok_exits:
        return None
    said = ""
    log = getattr(item, "log", None)
    if isinstance(log, Path) and log.exists():
        said = f":\n--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
    return f"{getattr(log, 'name', 'the process')} exited ({proc.returncode}){said}"


def _tails(watch: Sequence[Watched]) -> str:
    logs = [log for item in watch if isinstance(log := getattr(item, "log", None), Path)
            and log.exists()]
    return "".join(f"\n--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
                   for log in logs)


def eventually(check: Callable[[], T | None], what: str = "", *, timeout: float = TIMEOUT_S,
               every: float = EVERY_S, watch: Sequence[Watched] = (),
               ok_exits: Sequence[int] = ()) -> T:
    """Call ``check`` until it returns something true, and return that.

    AssertionError naming ``what`` after ``timeout`` seconds, or as soon as a process of
    ``watch`` exits with a code not in ``ok_exits`` (a host the test itself stopped or
    killed: ``ok_exits=(0, -signal.SIGKILL)``), with the watched processes' log tails.
    """
    deadline = time.monotonic() + timeout
    while not (found := check()):
        for item in watch:
            why = _exited(item, ok_exits)
            if why is not None:
                if found := check():  # what it did just before it exited
                    return found
                raise AssertionError(f"{why}\nbefore {what or check}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for "
                                 f"{what or check}{_tails(watch)}")
        time.sleep(every)
    return found


def seconds_until(check: Callable[[], object], what: str = "", **options: Any) -> float:
    """:func:`eventually`, returning the seconds it took."""
    start = time.monotonic()
    eventually(check, what, **options)
    return time.monotonic() - start


def fastest(run: Callable[[], object], times: int = 3) -> float:
    """The shortest wall time of ``times`` runs of ``run``, each of which checks its own
    outcome (a clean-clone CI run stretched one call beside CPU burners by 3.98 s)."""
    took = []
    for _ in range(times):
        start = time.monotonic()
        run()
        took.append(time.monotonic() - start)
    return min(took)


async def fastest_async(run: Callable[[], Awaitable[object]], times: int = 3) -> float:
    """:func:`fastest` for a run that awaits."""
    took = []
    for _ in range(times):
        start = time.monotonic()
        await run()
        took.append(time.monotonic() - start)
    return min(took)


async def eventually_async(check: Callable[[], T | Awaitable[T | None] | None], what: str = "",
                           *, timeout: float = TIMEOUT_S, every: float = EVERY_S) -> T:
    """:func:`eventually` inside an event loop, for a check that awaits (``check`` may be a
    coroutine function): between checks it yields to the loop, whose own tasks are often
    what it waits for (a blocking sleep would starve them)."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if inspect.isawaitable(found):
            found = await found
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or check}")
        await asyncio.sleep(every)


def all_threads_stopped(pid: int) -> bool:
    """Whether every thread of ``pid`` is stopped (state T or t in /proc): SIGSTOP is
    asynchronous and reaches each thread in its turn, so a test that stops a process waits
    on this before it reads what the process holds. A thread that ended is not running."""
    def running(task: Path) -> bool:
        try:
            return (task / "stat").read_text().rsplit(")", 1)[1].split()[0] not in "tT"
        except FileNotFoundError:
            return False

    return not any(running(task) for task in Path(f"/proc/{pid}/task").iterdir())


def busy_share(threads: Sequence[threading.Thread], seconds: float = 0.5
               ) -> tuple[float, dict[str, float]]:
    """The CPU ``threads`` use over ``seconds`` of wall time, in cores (1.0: one core whole),
    and each busy one's by name, read from /proc (a thread that ends meanwhile counts for
    nothing).

    A check that nothing is left spinning after a test's work measures the threads that work
    ran on, not the process: a test worker's process may meanwhile be compiling for another
    test's host on wasmtime's own threads, which is neither a leak nor this test's."""
    def used() -> dict[int, tuple[str, int]]:
        ticks = {}
        for t in threads:
            try:
                fields = Path(f"/proc/self/task/{t.native_id}/stat").read_text() \
                    .rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            ticks[t.native_id or 0] = (t.name, int(fields[11]) + int(fields[12]))
        return ticks

    before, wall = used(), time.monotonic()
    threading.Event().wait(seconds)
    after = used()
    scale = os.sysconf("SC_CLK_TCK") * (time.monotonic() - wall)
    each = {name: (after.get(tid, (name, ticks))[1] - ticks) / scale
            for tid, (name, ticks) in before.items()}
    return sum(each.values()), {name: share for name, share in each.items() if share > 0}
