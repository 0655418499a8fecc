"""A test program: a wasm32-wasi command compiled once, linked once, run in fresh instances.

Its imports are served as a plugin's are: WASI by the sandbox's own (``sandbox.wasi``, its
output to a sink of the runner's), each ``omnicore:<capability>`` by the capability's code
(:func:`.host.link`), and ``omnicore:testing`` by :mod:`.control`. Every :meth:`Program.run`
is a new instance with a new :class:`~.host.TestHost`: nothing one run did is seen by the next.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import wasmtime

from omnicore.errors import ConfigError, PluginLoadError
from omnicore.sandbox.compiled import engine_cause
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.fastcall import GuestFailure, RawInstance
from omnicore.sandbox.wasi import define_wasi
from omnicore.sandbox.wasi_output import OutputSink
from omnicore.storage import open_storage
from omnicore.toolchains import locations
from omnicore.toolchains.testhost.control import define_testing
from omnicore.toolchains.testhost.host import Current, TestHost, link

__all__ = ["Captured", "Outcome", "Program"]

#: A test's instance: its memory and how long it may run (a test is no plugin call).
MEMORY_LIMIT = 1 << 30
TIMEOUT_MS = 600_000


@dataclass(frozen=True)
class Outcome:
    """How one run ended: its exit code (0 when ``_start`` returned), or the trap."""

    code: int
    trap: str | None = None


class Captured:
    """A run's stdout and stderr together, for a runner that shows them only when the test
    failed (``data``)."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, fd: int, data: bytes) -> None:
        self.data += data

    def close(self) -> None:
        pass


class _Sink:
    """The running instance's stdout and stderr, kept for the runner to show or drop."""

    def __init__(self) -> None:
        self.target: OutputSink | None = None

    def write(self, fd: int, data: bytes) -> None:
        if self.target is not None:
            self.target.write(fd, data)

    def close(self) -> None:
        pass


def _compile(wasm: Path) -> tuple[SandboxEngine, wasmtime.Module]:
    """``wasm`` compiled by Winch, wasmtime's baseline compiler, into the test modules' cache;
    by Cranelift when Winch cannot (a proposal it lacks).

    A test binary is new on every edit and runs for moments: compiling it is most of what
    `omnicore test` waits for, and Winch takes a fifth of Cranelift's CPU (a Go test binary:
    0.5 s against 2.6 s). Its code is slower, which a test does not feel, and its traps,
    limits and deadlines are the runtime's, the same under either compiler.
    """
    cache = locations.cache_dir() / "test-modules"
    data = wasm.read_bytes()
    failed: Exception | None = None
    for baseline in (True, False):
        try:
            engine = SandboxEngine(cache_dir=cache, baseline=baseline)
        except ConfigError as exc:  # a wasmtime built without Winch
            failed = exc
            continue
        try:
            return engine, engine.compile(data)
        except wasmtime.WasmtimeError as exc:
            engine.close()
            failed = exc
    raise PluginLoadError(f"{wasm.name} is not a valid WebAssembly module: "
                          f"{engine_cause(str(failed))}") from None


class Program:
    """The test program at ``wasm``; :meth:`close` when done."""

    def __init__(self, wasm: Path, *,
                 compiled: tuple[wasmtime.Engine, wasmtime.Module] | None = None,
                 handlers: Sequence[str] | None = None) -> None:
        """``compiled``: the module at ``wasm`` already compiled, with its engine (Ruby's
        interpreter, compiled once by the set-up); ``handlers``: the plugin's, when its
        exports do not name them (Ruby's ``omni_h0``...)."""
        self.engine: SandboxEngine | None = None
        if compiled is not None:
            self._wasmtime, self.module = compiled
        else:
            self.engine, self.module = _compile(wasm)
            self._wasmtime = self.engine.wasmtime
        self.handlers = tuple(handlers) if handlers is not None else tuple(
            e.name for e in self.module.exports
            if isinstance(e.type, wasmtime.FuncType) and not e.name.startswith(("omni_", "_"))
            and [str(t) for t in e.type.params] == ["i32", "i32"]
            and [str(t) for t in e.type.results] == ["i64"])
        self.current = Current()
        self.current.make = self.fresh_host
        self.sink = _Sink()
        self._live: dict[int, RawInstance] = {}
        self._keepalive: list[Any] = []
        linker = wasmtime.Linker(self._wasmtime)
        define_wasi(linker, self.sink, self._live, self._keepalive)
        link(linker, self.module, self.current, self._live, self._keepalive)
        define_testing(linker, self.current, self._live, self._keepalive)
        try:
            self._pre = linker.instantiate_pre(self.module)
        except wasmtime.WasmtimeError as exc:
            raise PluginLoadError(f"{wasm.name} cannot be linked: "
                                  f"{engine_cause(str(exc))}") from None
        self._linker = linker
        self._dir = tempfile.TemporaryDirectory(prefix="omnicore-test-")
        self.storage = open_storage(self._dir.name)
        self._shared: dict[str, Any] = {}

    def fresh_host(self) -> TestHost:
        return TestHost(self.storage, Path(self._dir.name), self.handlers, self._shared)

    def run(self, args: Sequence[str], output: OutputSink, *,
            after_trap: str | None = None, entry: str = "_start",
            wasi: wasmtime.WasiConfig | None = None) -> Outcome:
        """Run ``entry`` (``_start``) in a new instance with ``args`` after the program's
        name, its output to ``output``. With ``after_trap``, that export is called once a
        trap ended the run (C's test host names the test that trapped). ``wasi``: the
        instance's own (Ruby's preopens and environment) instead of ``args`` and ours."""
        self.current.host = self.fresh_host()
        self.sink.target = output
        if wasi is None:
            wasi = wasmtime.WasiConfig()
            wasi.argv = ["tests", *args]
            # The environment a native test would see (cargo's, the caller's).
            wasi.env = [[k, v] for k, v in os.environ.items()]
        ticks = self.engine.deadline_ticks(TIMEOUT_MS) if self.engine is not None else 0
        inst: RawInstance | None = None
        try:
            inst = RawInstance(self._wasmtime, self._pre, memory_limit=MEMORY_LIMIT,
                               deadline_ticks=ticks, clock=self.engine,
                               fuel=None, wasi=wasi, live=self._live, has_initialize=False,
                               timeout_s=TIMEOUT_MS / 1000, command=True)
            inst.run(entry)
            return Outcome(0)
        except GuestFailure as failure:
            if failure.exit_status is not None:
                return Outcome(failure.exit_status)
            if after_trap is not None and inst is not None and inst.func(after_trap):
                try:
                    inst.run(after_trap)
                except GuestFailure:
                    pass  # it only reports: the trap is the outcome
            return Outcome(1, inst.refusal if inst is not None and inst.refusal
                           else failure.message)
        finally:
            if inst is not None:
                inst.close()
            self.sink.target = None

    def close(self) -> None:
        self.storage.close()
        self._dir.cleanup()
        if self.engine is not None:
            self.engine.close()
