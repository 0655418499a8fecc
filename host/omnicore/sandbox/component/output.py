"""A component's WASI 0.2 stdout and stderr, into its plugin log, through pipes.

Core modules write through omnicore's own ``fd_write`` (sandbox.wasi); a component's writes
are wasmtime's WASI 0.2, done on wasmtime's own (tokio) threads. A Python callback there is
dangerous: a write in flight while the interpreter shuts down makes CPython end that thread
with a forced unwind through Rust frames, and the process aborts. So the streams are pipes:
wasmtime writes bytes into a file descriptor and never calls into Python; a Python thread
reads both pipes into :class:`~omnicore.sandbox.wasi_output.WasiOutput` (its line splitting
and the log's budget), and :meth:`ComponentOutput.catch_up` takes in what is left on the
calling thread when a call returns, so its lines are in the log before the caller looks.
"""

from __future__ import annotations

import os
import selectors
import threading

import wasmtime

from omnicore.sandbox.pluginlog import PluginLog
from omnicore.sandbox.wasi_output import CHUNK, WasiOutput

__all__ = ["ComponentOutput"]

_STDOUT, _STDERR = 1, 2


class ComponentOutput:
    """The stdout (info) and stderr (warn) pipes of one component runtime."""

    def __init__(self, log: PluginLog) -> None:
        self._output = WasiOutput(log)
        out_r, self._out_w = os.pipe()
        err_r, self._err_w = os.pipe()
        self._wake_r, self._wake_w = os.pipe()
        self._streams = {out_r: _STDOUT, err_r: _STDERR}
        # Held while bytes are read and fed: by the reader thread or a caller catching up.
        self._lock = threading.Lock()
        self._closed = False
        self._selector = selectors.DefaultSelector()
        for fd in (out_r, err_r, self._wake_r):
            os.set_blocking(fd, False)
            self._selector.register(fd, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._pump, daemon=True,
                                        name=f"omnicore-wasi-{log.plugin}")
        self._thread.start()

    def config(self) -> wasmtime.WasiConfig:
        """A WASI config for one new instance: no preopens, no env, no args, and its
        stdout/stderr writing into this object's pipes."""
        wasi = wasmtime.WasiConfig()
        # Opened by wasmtime for the instance; the pipe is shared by all of them.
        wasi.stdout_file = f"/proc/self/fd/{self._out_w}"
        wasi.stderr_file = f"/proc/self/fd/{self._err_w}"
        return wasi

    def _drain(self, fd: int) -> None:
        # Called with the lock held: everything the pipe holds now.
        while True:
            try:
                data = os.read(fd, CHUNK)
            except BlockingIOError:
                return
            if not data:
                return
            self._output.write(self._streams[fd], data)

    def _pump(self) -> None:
        while not self._closed:
            for key, _ in self._selector.select():
                fd = int(key.fd)
                if fd == self._wake_r:
                    return
                with self._lock:
                    self._drain(fd)

    def catch_up(self) -> None:
        """Take in whatever the pipes hold, on the calling thread."""
        with self._lock:
            for fd in self._streams:
                self._drain(fd)

    def close(self) -> None:
        """Stop the reader (after taking in the rest) and close the pipes."""
        if self._closed:
            return
        self._closed = True
        os.write(self._wake_w, b"x")
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=1)
        self.catch_up()
        self._output.close()
        self._selector.close()
        for fd in (*self._streams, self._out_w, self._err_w, self._wake_r, self._wake_w):
            os.close(fd)
