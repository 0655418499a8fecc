"""A WASI plugin's stdout and stderr, into its log, through pipes (specs/abi.md §6).

wasmtime performs WASI writes on its own (tokio) threads. A Python callback there is
dangerous: a write still in flight while the interpreter shuts down makes CPython end that
thread with a forced unwind through Rust frames, and the whole process aborts. So the streams
are pipes: wasmtime writes bytes into a file descriptor and never calls into Python, and one
Python thread per plugin runtime reads both pipes and turns the bytes into log lines.

What a guest writes is bounded by the log's rate budget (``limits.max_log_bytes_per_s``):
past it, whole chunks are counted and dropped with one ``bytes.count``, so a guest writing
millions of newlines costs the reader microseconds per 64 KiB and never blocks for long on a
full pipe. Lines keep their order with the plugin's other log lines, and readers of the log
see every line written before they asked: before a line is added or read, the log calls
:meth:`catch_up`, which takes in whatever the pipes hold, on the calling thread.
"""

from __future__ import annotations

import os
import select
import selectors
import threading

import wasmtime

from omnicore.sandbox.pluginlog import PluginLog

__all__ = ["WasiOutput"]

_CHUNK = 65536


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
        buf = self._pending + data if self._pending else data
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            if not log.write(self._level, buf[start:end].decode("utf-8", "replace"),
                             catch_up=False):
                # Out of budget: the rest of this chunk is dropped without splitting it.
                log.drop(buf.count(b"\n", end + 1))
                self._pending = b""
                return
            start = end + 1
        rest = buf[start:]
        if len(rest) > self.MAX_PENDING:
            log.write(self._level, rest.decode("utf-8", "replace"), catch_up=False)
            rest = b""
        self._pending = rest

    def flush(self) -> None:
        if self._pending:
            self._log.write(self._level, self._pending.decode("utf-8", "replace"),
                            catch_up=False)
            self._pending = b""


class WasiOutput:
    """The stdout (info) and stderr (warn) pipes of one plugin runtime and their reader."""

    def __init__(self, log: PluginLog) -> None:
        self._log = log
        out_r, self._out_w = os.pipe()
        err_r, self._err_w = os.pipe()
        wake_r, self._wake_w = os.pipe()
        self._sinks = {out_r: _LineSink(log, 2), err_r: _LineSink(log, 3)}
        self._wake_r = wake_r
        # Held while bytes are read and fed: by the reader thread, or by a thread catching up.
        self._lock = threading.Lock()
        self._closed = False
        self._selector = selectors.DefaultSelector()
        for fd in (out_r, err_r, wake_r):
            os.set_blocking(fd, False)
            self._selector.register(fd, selectors.EVENT_READ)
        # For catch_up on the caller's thread: one select() with a zero timeout says whether
        # either pipe holds anything (it runs before every log line of a WASI plugin, so it
        # must be cheap; a poll object would be cheaper but cannot be shared by threads).
        self._pipes = [out_r, err_r]
        self._thread = threading.Thread(target=self._pump, daemon=True,
                                        name=f"omnicore-wasi-{log.plugin}")
        self._thread.start()
        log.add_drain(self.catch_up)

    def config(self) -> wasmtime.WasiConfig:
        """A WASI config for one new instance: no preopens, no env, no args (§6), and its
        stdout/stderr writing into this object's pipes."""
        wasi = wasmtime.WasiConfig()
        # Opened by wasmtime for the instance; the pipe is shared by all of them.
        wasi.stdout_file = f"/proc/self/fd/{self._out_w}"
        wasi.stderr_file = f"/proc/self/fd/{self._err_w}"
        return wasi

    def _read(self, fd: int) -> None:
        # Called with the lock held.
        try:
            data = os.read(fd, _CHUNK)
        except (BlockingIOError, OSError):
            return
        if data:
            self._sinks[fd].feed(data)

    def _pump(self) -> None:
        sel = self._selector
        while not self._closed:
            events = sel.select()
            with self._lock:
                for key, _ in events:
                    fd = int(key.fd)
                    try:
                        if fd == self._wake_r:
                            os.read(fd, _CHUNK)
                        elif not self._closed:
                            self._read(fd)
                    except Exception:  # a dead reader would leave writers on a full pipe
                        pass

    def catch_up(self) -> None:
        """Take into the log everything the pipes hold now (on the calling thread)."""
        if self._closed:
            return
        try:
            ready = select.select(self._pipes, [], [], 0)[0]
        except (OSError, ValueError):  # closed under us by close() on another thread
            return
        if not ready:
            return
        with self._lock:
            # One read per ready pipe, at most its capacity: a guest writing faster than
            # this cannot keep the caller here.
            for fd in ready:
                self._read(fd)

    def close(self) -> None:
        """Stop reading (after taking in what is there) and release the pipes."""
        if self._closed:
            return
        self.catch_up()
        self._log.remove_drain(self.catch_up)
        self._closed = True
        os.write(self._wake_w, b"x")
        self._thread.join(timeout=1)
        for sink in self._sinks.values():
            sink.flush()
        self._selector.close()
        for fd in (*self._sinks, self._wake_r, self._wake_w, self._out_w, self._err_w):
            try:
                os.close(fd)
            except OSError:
                pass
