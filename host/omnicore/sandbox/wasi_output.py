"""A WASI plugin's stdout and stderr, into its log (specs/abi.md §6).

``fd_write`` to fds 1 and 2 is omnicore's own host function (``sandbox.wasi``), so the bytes
arrive here on the calling thread, inside the call's deadline. wasmtime's own stdout would
write them in 4 KiB pieces into a pipe and wait for a reader thread at every piece: beside
two CPU-burning processes one 2 MB write took 15 s of thread hand-overs, outside any deadline.

What a guest writes is bounded by the log's budgets (``limits.max_log_bytes_per_s`` and
``limits.max_log_lines_per_s``): past them, and for lines below the log's level, whole
chunks are counted or skipped with one ``bytes.count``/``bytes.rfind``, so a guest writing
millions of newlines costs microseconds per 64 KiB and never a Python call per line.
"""

from __future__ import annotations

import threading
from typing import Protocol

import wasmtime

from omnicore.sandbox.pluginlog import PluginLog

__all__ = ["CHUNK", "OutputSink", "WasiOutput"]

#: Bytes taken in one piece; the caller checks its deadline between pieces.
CHUNK = 65536
STDOUT, STDERR = 1, 2


class OutputSink(Protocol):
    """Where a guest's stdout and stderr go: a plugin's log (:class:`WasiOutput`) or, for a
    command run, the host's own streams (``sandbox.command.Passthrough``)."""

    def write(self, fd: int, data: bytes) -> None:
        """Take ``data`` written to ``fd`` (1 or 2); at most :data:`CHUNK` bytes at a time."""

    def close(self) -> None:
        """The guest is done writing (an unfinished last line is written as it is)."""


class _LineSink:
    """Splits one stream into lines; libc writes a line in several pieces."""

    __slots__ = ("_level", "_log", "_pending")

    #: A partial line longer than this is logged as it is rather than buffered further.
    MAX_PENDING = 8192

    def __init__(self, log: PluginLog, level: int) -> None:
        self._log = log
        self._level = level
        self._pending = b""

    def feed(self, data: bytes) -> None:
        log = self._log
        if not log.enabled(self._level):
            # Filtered out: only the unfinished tail matters (it may become a line later,
            # after the level changes). No per-line work.
            end = data.rfind(b"\n")
            rest = data[end + 1:] if end >= 0 else self._pending + data
            self._pending = rest if len(rest) <= self.MAX_PENDING else b""
            return
        buf = self._pending + data if self._pending else data
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            if not log.write(self._level, buf[start:end].decode("utf-8", "replace")):
                # Out of budget: the rest of this chunk is dropped without splitting it.
                log.drop(buf.count(b"\n", end + 1))
                self._pending = b""
                return
            start = end + 1
        rest = buf[start:]
        if len(rest) > self.MAX_PENDING:
            log.write(self._level, rest.decode("utf-8", "replace"))
            rest = b""
        self._pending = rest

    def flush(self) -> None:
        if self._pending:
            self._log.write(self._level, self._pending.decode("utf-8", "replace"))
            self._pending = b""


class WasiOutput:
    """The stdout (info) and stderr (warn) line streams of one plugin runtime."""

    def __init__(self, log: PluginLog) -> None:
        self._sinks = {STDOUT: _LineSink(log, 2), STDERR: _LineSink(log, 3)}
        # Instances of one runtime write from several threads; a line is split per stream.
        self._lock = threading.Lock()

    @staticmethod
    def config() -> wasmtime.WasiConfig:
        """A WASI config for one new instance: no preopens, no env, no args (abi.md §6).

        stdout/stderr stay wasmtime's defaults (they take nothing): the guest's writes reach
        :meth:`write` through omnicore's ``fd_write``.
        """
        return wasmtime.WasiConfig()

    def write(self, fd: int, data: bytes) -> None:
        """Take ``data`` written to ``fd`` (1 or 2); at most :data:`CHUNK` bytes at a time."""
        with self._lock:
            self._sinks[fd].feed(data)

    def close(self) -> None:
        """Log the unfinished last line of each stream."""
        with self._lock:
            for sink in self._sinks.values():
                sink.flush()
