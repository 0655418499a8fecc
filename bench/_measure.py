"""One way to measure, for every column of every benchmark table.

Every column of a row gets the same iterations, repeats and warm-up; a cell is the median
per-operation time over the repeats with its min and max, so a reader sees the spread, not a
lucky best-of. Nothing is printed that was not measured in the same run.
"""

from __future__ import annotations

import atexit
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["SMOKE", "Callgrind", "Sample", "machine", "measure", "measure_alternating",
           "render", "runs", "scratch"]

#: ``OMNICORE_BENCH_SMOKE=1``: every measurement once, no warm-up: the figures mean nothing,
#: the run shows the script still works end to end (tests/test_bench.py).
SMOKE = bool(os.environ.get("OMNICORE_BENCH_SMOKE"))


def runs(repeats: int) -> int:
    """How many times to repeat a measurement a script times itself: one in a smoke run."""
    return 1 if SMOKE else repeats


def scratch(prefix: str) -> Path:
    """A fresh folder for one benchmark run, removed when the script exits however it ends
    (but a SIGKILL): a bench pulls modules, starts databases and hosts, and a suite that
    smoke-runs every script (tests/test_bench.py) must not leave their gigabytes behind."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@dataclass(frozen=True)
class Sample:
    """Per-operation times in µs over the repeats."""

    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{_num(self.median)} [{_num(self.low)}-{_num(self.high)}]"

    def ratio(self, other: Sample) -> float:
        return self.median / other.median


def _num(us: float) -> str:
    return f"{us:.2f}" if us < 10 else f"{us:.1f}" if us < 1000 else f"{us:.0f}"


def measure(fn: Callable[[], object], iters: int, repeats: int = 7,
            warmup: int | None = None) -> Sample:
    """Run ``fn`` ``warmup`` times (default: a tenth of ``iters``), then ``repeats`` timed runs
    of ``iters`` calls each."""
    if SMOKE:
        iters, repeats, warmup = 1, 1, 0
    for _ in range(iters // 10 if warmup is None else warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        times.append((time.perf_counter() - start) / iters * 1e6)
    return Sample(statistics.median(times), min(times), max(times))


def measure_alternating(fns: Sequence[Callable[[], object]], iters: int, repeats: int = 7,
                        warmup: int | None = None) -> list[Sample]:
    """:func:`measure` of each of ``fns``, their timed runs taking turns (a, b, a, b, ...), so
    a change in the machine's load falls on all of them alike: for the columns of a ratio."""
    if SMOKE:
        iters, repeats, warmup = 1, 1, 0
    for fn in fns:
        for _ in range(iters // 10 if warmup is None else warmup):
            fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            start = time.perf_counter()
            for _ in range(iters):
                fn()
            out.append((time.perf_counter() - start) / iters * 1e6)
    return [Sample(statistics.median(t), min(t), max(t)) for t in times]



def process_cpu_s(pid: int, thread: int | None = None) -> float:
    """Seconds of CPU process ``pid`` has used (all its threads, live or ended): a server's
    cost measured from outside it, whatever load generator drives it; ``thread``: that one
    thread's alone (its id, the process's own for its main thread)."""
    where = f"/proc/{pid}" if thread is None else f"/proc/{pid}/task/{thread}"
    fields = Path(f"{where}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def stop_process(proc: subprocess.Popen[bytes] | None) -> None:
    """End a server the bench started: asked first, killed after a minute."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()

def machine() -> str:
    """What the numbers were measured on."""
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")),
                       platform.processor())
    except OSError:
        cpu = platform.processor()
    return (f"{cpu}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
            f"python {sys.version.split()[0]}, wasmtime {metadata.version('wasmtime')}")


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool = False) -> str:
    """A plain aligned table, or a Markdown one."""
    if markdown:
        out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        out += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(out)
    widths = [max(len(str(r[i])) for r in (*rows, headers)) for i in range(len(headers))]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([line.format(*headers), line.format(*("-" * w for w in widths)),
                      *(line.format(*r) for r in rows)])


class Callgrind:
    """A server's instructions, counted by valgrind's callgrind (``Ir``: every instruction
    its threads ran in user space), switched on around what is measured
    (``callgrind_control``) and read from each dump's ``totals:`` line. The server runs under
    :meth:`wrap`; bench_telemetry.py and bench_routes.py count with it
    (``--counter instructions``)."""

    def __init__(self, out: Path, cache: bool = False) -> None:
        self.out = out
        self.dumps = 0
        #: ``cache``: valgrind's simulated caches too (``--cache-sim=yes``: its L1 and
        #: last-level misses, in :attr:`events` after each count; a run takes twice as long).
        self.cache = cache
        #: Every event of the last count's dump by name (``Ir``, ``I1mr``, ``D1mr``...).
        self.events: dict[str, int] = {}

    def wrap(self) -> list[str]:
        return ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--dump-instr=no",
                *(["--cache-sim=yes"] if self.cache else []),
                f"--callgrind-out-file={self.out}"]

    @staticmethod
    def _control(pid: int, *args: str) -> None:
        subprocess.run(["callgrind_control", *args, str(pid)], check=True,
                       capture_output=True, timeout=900)

    def count(self, pid: int, label: str, work: Any) -> tuple[int, float]:
        """(instructions, wall seconds) of ``work()`` in the host ``pid``."""
        self._control(pid, "-i", "on")
        self._control(pid, "-z")
        start = time.monotonic()
        work()
        took = time.monotonic() - start
        self._control(pid, "-d", label)
        self._control(pid, "-i", "off")
        self.dumps += 1
        text = Path(f"{self.out}.{self.dumps}").read_text()
        names = re.search(r"^events: (.+)$", text, re.M)
        totals = re.search(r"^totals: (.+)$", text, re.M)
        assert names is not None and totals is not None, f"{self.out}.{self.dumps}"
        self.events = dict(zip(names.group(1).split(), map(int, totals.group(1).split()),
                               strict=True))
        return self.events["Ir"], took
