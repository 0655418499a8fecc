"""A WASI command module run once, as ``wasmtime run`` does: ``omnicore exec`` (specs/host.md).

A command is a core module whose ``_start`` is its one call. It runs in the sandbox plugins
run in: the same engine, omnicore's own WASI preview 1 (``sandbox.wasi``: clocks, sleeps,
random and output bounded by the deadline; ``sandbox.wasi_fs`` for the ``fs`` grant's
directories), one :class:`~omnicore.sandbox.fastcall.RawInstance` with the memory and table
limits of :class:`~omnicore.sandbox.limits.Limits`, and the deadline ``limits.timeout_ms``
holding for instantiation and ``_start`` together. What differs from a plugin: the guest's
arguments and environment are the caller's, its stdout and stderr go to the caller's streams
(:class:`Passthrough`) instead of its log, and ``proc_exit(n)`` is an answer, not a failure.

:func:`run_command` returns the exit code (0 when ``_start`` returns); a trap, the deadline or
a limit raises the ``PluginCallError`` that :func:`sandbox.failures.classify` gives a plugin
call failing the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import wasmtime

from omnicore.errors import InvalidModule, PluginCallError, PluginLoadError
from omnicore.sandbox.compiled import engine_cause
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.failures import Facts, classify
from omnicore.sandbox.fastcall import GuestFailure, GuestMemory, HostTrap, RawInstance
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.module import WASI_MODULE
from omnicore.sandbox.pluginlog import PluginLog
from omnicore.sandbox.wasi import define_wasi
from omnicore.sandbox.wasi_fd import FdTable, FsState, Preopen
from omnicore.sandbox.wasi_fs import define_wasi_fs
from omnicore.sandbox.wasi_output import STDERR

__all__ = ["START", "Command", "CommandModule", "Passthrough", "run_command"]

#: The export a command runs (WASI's command ABI).
START = "_start"


class Passthrough:
    """A command's stdout and stderr, written straight to the host's streams, unbuffered.

    A reader that went away (a closed pipe) traps the guest with one line, as a host
    function's refusal: the run fails rather than writing into nothing.
    """

    def __init__(self, stdout: BinaryIO, stderr: BinaryIO) -> None:
        self._streams = {1: stdout, STDERR: stderr}

    def write(self, fd: int, data: bytes) -> None:
        stream = self._streams[fd]
        try:
            stream.write(data)
            stream.flush()
        except OSError as exc:
            name = "stdout" if fd == 1 else "stderr"
            raise HostTrap(f"cannot write to the host's {name}: "
                           f"{exc.strerror or type(exc).__name__}") from None

    def close(self) -> None:
        for stream in self._streams.values():
            try:
                stream.flush()
            except OSError:
                pass


@dataclass(frozen=True, slots=True)
class CommandModule:
    """A compiled WASI command: a core module exporting ``_start: () -> ()`` and importing
    from ``wasi_snapshot_preview1`` only."""

    name: str
    wasmtime_module: wasmtime.Module = field(repr=False)

    @classmethod
    def load(cls, engine: SandboxEngine, source: bytes | Path | str,
             name: str | None = None) -> CommandModule:
        """Compile ``source`` (bytes or a path). InvalidModule says why it is not a command."""
        path = None if isinstance(source, (bytes, bytearray)) else Path(source)
        label = name or (path.name if path is not None else "<bytes>")
        if path is not None:
            try:
                wasm = path.read_bytes()
            except OSError as exc:
                raise InvalidModule(f"cannot read {path}: {exc.strerror or exc}",
                                    plugin=label) from None
        else:
            wasm = bytes(source)  # type: ignore[arg-type]
        if wasm[:4] == b"\0asm" and wasm[4:8] != b"\x01\x00\x00\x00":
            raise InvalidModule(f"{label} is a component; omnicore exec runs WASI preview 1 "
                                "command modules (core modules exporting _start)",
                                plugin=label)
        try:
            module = engine.compile(wasm)
        except wasmtime.WasmtimeError as exc:
            raise InvalidModule(f"{label} is not a valid WebAssembly module: "
                                f"{engine_cause(str(exc))}", plugin=label) from None
        start = next((e for e in module.exports if e.name == START), None)
        if start is None or not isinstance(start.type, wasmtime.FuncType) or \
                list(start.type.params) or list(start.type.results):
            raise InvalidModule(f"{label} is not a WASI command: it exports no {START} "
                                "function () -> () (a plugin or a reactor is called through "
                                "its handlers: omnicore call)", plugin=label)
        for imp in module.imports:
            if imp.module != WASI_MODULE or not isinstance(imp.type, wasmtime.FuncType):
                raise InvalidModule(
                    f"{label} imports {imp.module}.{imp.name}; a command may import functions "
                    f"from {WASI_MODULE} only (a plugin's capabilities need a plugin: "
                    "omnicore call)", plugin=label)
        return cls(name=label, wasmtime_module=module)


@dataclass(frozen=True, slots=True)
class Command:
    """What one run gets: ``args`` after the program name, ``env``, the ``fs`` grant's
    directories (``sandbox.wasi_fd.parse_dirs``) and the limits."""

    args: Sequence[str] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    dirs: tuple[Preopen, ...] = ()
    limits: Limits = field(default_factory=Limits)
    #: argv[0] as the guest sees it (the module's name when empty).
    program: str = ""


def _table(mem: GuestMemory) -> FdTable:
    table = mem.instance.fs_table
    assert isinstance(table, FdTable)  # the file functions are defined only with dirs
    return table


def run_command(engine: SandboxEngine, module: CommandModule, command: Command,
                stdout: BinaryIO, stderr: BinaryIO, log: PluginLog | None = None, *,
                origins: Mapping[str, str] | None = None) -> int:
    """Run ``module``'s ``_start`` once; its exit code (``proc_exit``'s, else 0).

    ``log`` takes what the sandbox itself says about the run (a path the fs functions
    refused). Raises PluginLoadError when it cannot be linked or started, and the
    PluginCallError of a plugin call failing the same way for a trap (Trap), the deadline
    (DeadlineExceeded) or a limit (MemoryLimitExceeded, LimitExceeded); ``origins`` names
    where the caller's limits were set, as for ``failures.classify``.
    """
    name, lim = module.name, command.limits
    log = log if log is not None else PluginLog(name)
    output = Passthrough(stdout, stderr)
    live: dict[int, RawInstance] = {}
    keepalive: list[Any] = []
    linker = wasmtime.Linker(engine.wasmtime)
    define_wasi(linker, output, live, keepalive)
    if command.dirs:
        define_wasi_fs(linker, FsState(command.dirs, log, output, _table), live, keepalive)
    try:
        pre = linker.instantiate_pre(module.wasmtime_module)
    except wasmtime.WasmtimeError as exc:
        raise PluginLoadError(f"command {name!r} cannot be linked: {engine_cause(str(exc))}",
                              plugin=name) from None
    wasi = wasmtime.WasiConfig()
    wasi.argv = [command.program or name, *command.args]
    wasi.env = [[k, v] for k, v in command.env.items()]
    inst: RawInstance | None = None
    try:
        inst = RawInstance(engine.wasmtime, pre, memory_limit=lim.max_memory_bytes,
                           deadline_ticks=engine.deadline_ticks(lim.timeout_ms), clock=engine,
                           fuel=None,
                           wasi=wasi, live=live, has_initialize=False,
                           timeout_s=lim.timeout_ms / 1000,
                           table_elements=lim.max_table_elements, tables=lim.max_tables,
                           files=FdTable(command.dirs) if command.dirs else None,
                           command=True)
        inst.run(START)
        return 0
    except GuestFailure as f:
        # proc_exit is the guest's answer, unless the deadline passed meanwhile.
        deadline = inst.deadline_hit if inst is not None else f.deadline_hit
        if f.exit_status is not None and not deadline:
            return f.exit_status
        raise _failure(name, lim, f, inst, origins) from None
    except ValueError as exc:  # a shape problem RawInstance found
        raise PluginLoadError(f"command {name!r} cannot start: {exc}", plugin=name) from None
    finally:
        if inst is not None:
            inst.close()
        output.close()


def _failure(name: str, lim: Limits, f: GuestFailure, inst: RawInstance | None,
             origins: Mapping[str, str] | None) -> PluginCallError:
    return classify(name, START, lim, Facts(
        message=f.message, code=f.code, exit_status=f.exit_status,
        deadline=inst.deadline_hit if inst is not None else f.deadline_hit,
        instantiating=(inst is None and f.code is None and f.refusal is None
                       and not f.deadline_hit),
        memory_bytes=inst.memory_size() if inst is not None else 0,
        refusal=inst.refusal if inst is not None else f.refusal), kind="export",
        origins=origins)
