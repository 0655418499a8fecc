"""Pre-initializing a Ruby plugin: the interpreter started and the plugin loaded at build
time, its memory and globals written into the module (what wizer does, without compiling the
interpreter again: the compiled runtime comes from runtime.py's cache).

The stage folder (the SDK, the plugin, its vendored gems and ``boot.rb``) is the guest's
``/omnicore`` while ``omni_init`` runs; a plugin's instances then start from the snapshot, so
a call never parses Ruby that was loaded at build time.
"""

from __future__ import annotations

import ctypes
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import wasmtime

from omnicore.errors import BuildError
from omnicore.sandbox.wasmbin import read_uleb, sections, write_sleb, write_uleb
from omnicore.toolchains.ruby import glue, runtime

__all__ = ["instantiate", "snapshot", "stage_wasi"]

_PAGE = 65536
#: Memory is scanned in blocks this size: all-zero blocks are left out of the data segments.
_BLOCK = 4096
#: Read by the interpreter as it starts. Its default stacks leave a started interpreter at
#: 67 MiB of memory, over the host's default 64 MiB limit; these bring it to 59 MiB. Fibers
#: (Enumerator#next) get the smallest stacks: a plugin's handlers seldom use them.
_ENV = {"RUBY_FIBER_VM_STACK_SIZE": "16384", "RUBY_FIBER_MACHINE_STACK_SIZE": "65536",
        "RUBY_THREAD_VM_STACK_SIZE": "524288", "RUBY_THREAD_MACHINE_STACK_SIZE": "262144"}


_leb = write_uleb


def _sections(wasm: bytes) -> Iterator[tuple[int, bytes]]:
    for sid, start, end in sections(wasm):
        yield sid, wasm[start:end]


def _vec(items: list[bytes]) -> bytes:
    return _leb(len(items)) + b"".join(items)


def _name(text: str) -> bytes:
    raw = text.encode()
    return _leb(len(raw)) + raw


def _exports(payload: bytes) -> dict[str, tuple[int, int]]:
    count, pos = read_uleb(payload, 0)
    out = {}
    for _ in range(count):
        size, pos = read_uleb(payload, pos)
        name = payload[pos:pos + size].decode()
        kind = payload[pos + size]
        index, pos = read_uleb(payload, pos + size + 1)
        out[name] = (kind, index)
    return out


def _first_segment(payload: bytes) -> bytes:
    """Data segment 0 (the glue's passive start-up strings), as encoded."""
    _, pos = read_uleb(payload, 0)
    start = pos
    flag, pos = read_uleb(payload, pos)
    if flag != 1:
        raise BuildError("the Ruby runtime's first data segment is not the glue's",
                         toolchain="ruby")
    size, pos = read_uleb(payload, pos)
    return payload[start:pos + size]


def _segments(memory: bytes) -> list[bytes]:
    """The memory's non-zero stretches as active data segments (4 KiB granularity)."""
    zero = bytes(_BLOCK)
    out: list[bytes] = []
    start = None
    for at in range(0, len(memory) + _BLOCK, _BLOCK):
        empty = at >= len(memory) or memory[at:at + _BLOCK] == zero
        if not empty and start is None:
            start = at
        elif empty and start is not None:
            chunk = memory[start:at].rstrip(b"\0")
            lead = len(chunk) - len(chunk.lstrip(b"\0"))
            chunk = chunk[lead:]
            out.append(b"\0\x41" + write_sleb(start + lead) + b"\x0b" + _leb(len(chunk)) + chunk)
            start = None
    return out


def _globals(payload: bytes, values: list[int | float]) -> bytes:
    """The global section with each global's initializer replaced by its snapshot value."""
    count, pos = read_uleb(payload, 0)
    out = []
    for i in range(count):
        valtype, mut = payload[pos], payload[pos + 1]
        pos += 2
        end = payload.index(b"\x0b", pos)  # const initializers: one instruction, then `end`
        pos = end + 1
        value = values[i]
        if valtype == 0x7F:
            init = b"\x41" + write_sleb(int(value) if int(value) < 2**31 else int(value) - 2**32)
        elif valtype == 0x7E:
            init = b"\x42" + write_sleb(int(value) if int(value) < 2**63 else int(value) - 2**64)
        else:
            raise BuildError(f"the Ruby runtime has a global of type {valtype:#x}",
                             toolchain="ruby")
        out.append(bytes([valtype, mut]) + init + b"\x0b")
    return _vec(out)


def instantiate(stage: Path, stdout: Path,
                stderr: Path) -> tuple[wasmtime.Store, wasmtime.Instance]:
    """The every-namespace runtime instantiated with ``stage`` as ``/omnicore``, its host
    functions trapping (the plugin loads before any call; its tests have their own host)."""
    eng = runtime.engine()
    module = runtime.compiled_all(eng)
    store = wasmtime.Store(eng)
    wasi = stage_wasi(stage)
    wasi.stdout_file = str(stdout)
    wasi.stderr_file = str(stderr)
    store.set_wasi(wasi)
    linker = wasmtime.Linker(eng)
    linker.define_wasi()
    for imp in module.imports:
        if not imp.module.startswith("omnicore:"):
            continue
        key = f"{imp.module.removeprefix('omnicore:')}.{imp.name}"
        assert isinstance(imp.type, wasmtime.FuncType) and imp.name is not None
        linker.define_func(imp.module, imp.name, imp.type, _refuse(key), access_caller=True)
    return store, linker.instantiate(store, module)


def stage_wasi(stage: Path) -> wasmtime.WasiConfig:
    """The interpreter's WASI while it starts: ``stage`` as ``/omnicore``, its environment."""
    wasi = wasmtime.WasiConfig()
    wasi.preopen_dir(str(stage), "/omnicore")
    # Placeholders for the fs grant's directories: wasi-vfs maps the fds it finds now to the
    # host's for good, and the glue swaps in the instance's names at its first call.
    for fd in range(4, 3 + glue.MAX_DIRS):
        wasi.preopen_dir(str(stage), f"/.omnicore-fd{fd}")
    wasi.env = list(_ENV.items())
    return wasi


def _refuse(key: str) -> Callable[..., None]:
    def refuse(caller: wasmtime.Caller, *args: object) -> None:
        raise wasmtime.WasmtimeError(
            f"omnicore:{key} was called while the plugin loaded at build time; host functions "
            "are for handlers (move the call into one)")
    return refuse


def snapshot(stage: Path, shipped: Callable[[], Path], handlers: list[str]) -> bytes:
    """The plugin module: ``shipped()`` (the runtime importing the plugin's namespaces, asked
    for once the plugin loaded) with the memory and globals of the every-namespace runtime
    after ``omni_init`` ran on ``stage``, each handler exported under its name."""
    with tempfile.TemporaryDirectory(prefix="omnicore-ruby-") as tmp:
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        store, instance = instantiate(stage, out, err)
        exports = instance.exports(store)
        init = exports["omni_init"]
        assert isinstance(init, wasmtime.Func)
        try:
            init(store)
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            said = (err.read_text(errors="replace") + out.read_text(errors="replace")).strip()
            raise BuildError(f"loading the plugin failed:\n{said or exc}",
                             toolchain="ruby") from None
        memory = exports["memory"]
        assert isinstance(memory, wasmtime.Memory)
        size = memory.data_len(store)
        image = ctypes.string_at(memory.data_ptr(store), size)
        values = []
        for i in range(1000):
            glob = exports.get(f"omni_g{i}") if hasattr(exports, "get") else None
            if glob is None:
                try:
                    glob = exports[f"omni_g{i}"]
                except KeyError:
                    break
            assert isinstance(glob, wasmtime.Global)
            values.append(glob.value(store))
    return _write(shipped().read_bytes(), image, size // _PAGE, values, handlers)


def _write(base: bytes, image: bytes, pages: int, values: list[object],
           handlers: list[str]) -> bytes:
    out = bytearray(base[:8])
    sections = list(_sections(base))
    exports = _exports(next(p for sid, p in sections if sid == 7))
    data = next(p for sid, p in sections if sid == 11)
    segments = [_first_segment(data), *_segments(image)]
    for sid, payload in sections:
        if sid == 5:  # memory: starts at the snapshot's size
            payload = _vec([b"\0" + _leb(pages)])
        elif sid == 6:
            payload = _globals(payload, values)  # type: ignore[arg-type]
        elif sid == 7:
            keep = [_name(n) + bytes([kind]) + _leb(index)
                    for n, (kind, index) in exports.items() if n in ("memory", "omni_alloc",
                                                                       "omni_free")]
            keep += [_name(h) + b"\0" + _leb(exports[f"omni_h{i}"][1])
                     for i, h in enumerate(handlers)]
            payload = _vec(keep)
        elif sid == 12:
            payload = _leb(len(segments))
        elif sid == 11:
            payload = _vec(segments)
        elif sid == 0:
            continue  # names: their data and global indices are the runtime's, not ours
        out += bytes([sid]) + _leb(len(payload)) + payload
    return bytes(out)
