"""The compiled-module cache: damaged entries are caught before wasmtime trusts them, and a
cache directory others can write is refused (forged entries and keys:
test_modcache_trust.py)."""

from __future__ import annotations

import fcntl
import gc
import hashlib
import logging
import os
import struct
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import wasmtime

from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import ConfigError
from omnicore.sandbox import PluginModule, PluginRuntime, SandboxEngine, modcache, modkey
from tests.waiting import eventually

GREETING = b"greeting-from-the-data-section"

#: One handler answers from a data segment (``.rodata.wasm`` in the artifact), one runs code.
CACHE_WAT = r"""
(module
  (memory (export "memory") 4)
  (global $bump (mut i32) (i32.const 0x10000))
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.add (global.get $bump) (local.get $n)))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  (data (i32.const 0x100) "greeting-from-the-data-section")
  (func (export "hello") (param i32 i32) (result i64)
    (i64.or (i64.shl (i64.const 0x100) (i64.const 32)) (i64.const 30)))
  (func (export "echo") (param $p i32) (param $n i32) (result i64)
    (i64.or (i64.shl (i64.extend_i32_u (local.get $p)) (i64.const 32))
            (i64.extend_i32_u (local.get $n))))
)
"""


def _wasm() -> bytes:
    return wasmtime.wat2wasm(CACHE_WAT)


def _sections(body: bytes) -> dict[str, tuple[int, int]]:
    """An ELF64 artifact's sections: name -> (offset, size)."""
    shoff = struct.unpack_from("<Q", body, 0x28)[0]
    entsize, count, names = struct.unpack_from("<HHH", body, 0x3A)
    rows = [struct.unpack_from("<IIQQQQ", body, shoff + i * entsize) for i in range(count)]
    table = rows[names][4]
    found = {}
    for name, _kind, _flags, _addr, offset, size in rows:
        label = body[table + name:body.index(b"\0", table + name)].decode()
        found[label] = (offset, size)
    return found


def _entry(cache: Path) -> Path:
    [entry] = cache.glob("*.cwasm")
    return entry


def _mac(entry: Path) -> Path:
    return entry.with_name(entry.name + ".mac")


def _cached(entry: Path | None, sha: str, engine: wasmtime.Engine,
            compile: Callable[[], wasmtime.Module]) -> wasmtime.Module:
    return modcache.compiled(entry, modcache.Origin(sha, "test"), engine, wasmtime.Module,
                             compile, modkey.user_key())


def _flip(entry: Path, where: str) -> None:
    """Flip bytes of the artifact's code (``.text``) or data (the greeting's segment)."""
    data = bytearray(entry.read_bytes())
    body = bytes(data)
    if where == "code":
        offset, size = _sections(body)[".text"]
        span = range(offset, offset + min(size, 512))
    else:
        offset, size = _sections(body)[".rodata.wasm"]
        start = body.index(GREETING, offset, offset + size)
        span = range(start, start + len(GREETING))
    for i in span:
        data[i] ^= 0xFF
    entry.write_bytes(bytes(data))


def _answers(cache: Path) -> tuple[bytes, bytes]:
    with SandboxEngine(cache_dir=cache) as eng:
        module = PluginModule.load(eng, _wasm())
        rt = PluginRuntime(eng, module, builtin_registry())
        try:
            return rt.call("hello", b""), rt.call("echo", b"still code")
        finally:
            rt.close()


@pytest.mark.parametrize("where", ["code", "data", "code, mtime put back"])
def test_flipped_bytes_are_caught_recompiled_and_the_entry_rewritten(
        tmp_path: Path, where: str, caplog: pytest.LogCaptureFixture) -> None:
    assert _answers(tmp_path) == (GREETING, b"still code")   # checked once by this process
    entry = _entry(tmp_path)
    before = entry.stat()
    _flip(entry, where.split(",")[0])
    if "mtime" in where:   # the same size and mtime: only the ctime tells it changed
        os.utime(entry, ns=(before.st_atime_ns, before.st_mtime_ns))
    with caplog.at_level(logging.WARNING, logger="omnicore.sandbox"):
        assert _answers(tmp_path) == (GREETING, b"still code")
    assert "MAC does not match" in caplog.text and str(entry) in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="omnicore.sandbox"):
        assert _answers(tmp_path) == (GREETING, b"still code")   # served from the new entry
    assert "refused" not in caplog.text
    assert not list(tmp_path.glob(".tmp-*"))


_CHILD = textwrap.dedent("""
    import sys, wasmtime
    from pathlib import Path
    from omnicore.capabilities.builtin import builtin_registry
    from omnicore.sandbox import PluginModule, PluginRuntime, SandboxEngine
    eng = SandboxEngine(cache_dir=Path(sys.argv[1]))
    module = PluginModule.load(eng, Path(sys.argv[2]).read_bytes())
    rt = PluginRuntime(eng, module, builtin_registry())
    sys.stdout.write(rt.call("hello", b"").decode() + " " + rt.call("echo", b"ok").decode())
""")


@pytest.mark.parametrize("where", ["code", "data"])
def test_a_host_loading_a_damaged_entry_does_not_crash(tmp_path: Path, where: str) -> None:
    cache = tmp_path / "cache"
    wasm = tmp_path / "p.wasm"
    wasm.write_bytes(_wasm())
    run = [sys.executable, "-c", _CHILD, str(cache), str(wasm)]
    first = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    _flip(_entry(cache), where)
    second = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, (second.returncode, second.stderr)  # was SIGSEGV/SIGBUS
    assert second.stdout == f"{GREETING.decode()} ok"
    assert "MAC does not match" in second.stderr


def _other_wasm() -> bytes:
    return wasmtime.wat2wasm(CACHE_WAT.replace("greeting-from-the-data-section",
                                               "another-module-entirely-xxxxxx"))


@pytest.mark.parametrize(("damage", "reason"), [
    (lambda entry: entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2]),
     "MAC does not match"),                                                  # truncated
    (lambda entry: entry.write_bytes(b""), "MAC does not match"),            # emptied
    (lambda entry: _mac(entry).unlink(), "no MAC beside it"),                # an older cache
    (lambda entry: _mac(entry).write_bytes(b"junk"), "not one of this omnicore"),
])
def test_truncated_empty_and_unsummed_entries_are_recompiled(
        tmp_path: Path, caplog: pytest.LogCaptureFixture,
        damage: Callable[[Path], object], reason: str) -> None:
    _answers(tmp_path)
    entry = _entry(tmp_path)
    damage(entry)
    with caplog.at_level(logging.WARNING, logger="omnicore.sandbox"):
        assert _answers(tmp_path) == (GREETING, b"still code")
    assert reason in caplog.text


def test_another_modules_entry_under_this_name_is_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    other = tmp_path / "other"
    with SandboxEngine(cache_dir=other) as eng:
        PluginModule.load(eng, _other_wasm())
    _answers(tmp_path)
    entry = _entry(tmp_path)
    entry.write_bytes(_entry(other).read_bytes())     # a whole entry and its MAC, renamed
    _mac(entry).write_bytes(_mac(_entry(other)).read_bytes())
    with caplog.at_level(logging.WARNING, logger="omnicore.sandbox"):
        assert _answers(tmp_path) == (GREETING, b"still code")
    assert "MAC does not match" in caplog.text


# -- who may write the cache -----------------------------------------------------------------

def test_a_new_cache_dir_is_made_0700(tmp_path: Path) -> None:
    cache = tmp_path / "deep" / "cache"
    SandboxEngine(cache_dir=cache).close()
    assert cache.stat().st_mode & 0o777 == 0o700


@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757, 0o1777])
def test_a_cache_dir_others_can_write_is_refused(tmp_path: Path, mode: int) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(mode)
    with pytest.raises(ConfigError, match="writable by other users") as caught:
        SandboxEngine(cache_dir=cache)
    assert caught.value.key == "sandbox.cache_dir"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand a directory to another user")
def test_a_cache_dir_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    os.chown(cache, 65534, 65534)
    with pytest.raises(ConfigError, match="owned by uid 65534"):
        SandboxEngine(cache_dir=cache)


def test_a_cache_dir_only_its_owner_writes_is_fine(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o755)
    assert _answers(cache) == (GREETING, b"still code")


def test_compiled_compiles_once_then_loads_the_entry(tmp_path: Path) -> None:
    engine = wasmtime.Engine()
    wasm = wasmtime.wat2wasm('(module (func (export "f")))')
    sha = hashlib.sha256(wasm).hexdigest()
    compiles: list[int] = []

    def compile() -> wasmtime.Module:
        compiles.append(1)
        return wasmtime.Module(engine, wasm)

    entry = tmp_path / "m.cwasm"
    first = _cached(entry, sha, engine, compile)
    again = _cached(entry, sha, engine, compile)
    assert compiles == [1] and entry.is_file()
    assert [e.name for e in again.exports] == [e.name for e in first.exports] == ["f"]
    _cached(None, sha, engine, compile)  # no cache: compiled every time
    assert compiles == [1, 1]


def test_a_compiled_module_is_served_from_its_stored_entry_and_malloc_trimmed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 63: the module compile() made kept its code in anonymous memory and its compile's
    # buffers in malloc's arenas (a cold demo host held 4x a warm one's RSS): once stored,
    # it is dropped for the entry loaded as every other host loads it, and malloc trimmed.
    engine = wasmtime.Engine()
    wasm = wasmtime.wat2wasm('(module (func (export "f")))')
    sha = hashlib.sha256(wasm).hexdigest()
    made: list[wasmtime.Module] = []
    loads: list[object] = []
    trims: list[int] = []
    real_load = modcache.load

    def load(*args: object) -> object:
        got = real_load(*args)  # type: ignore[arg-type]
        loads.append(got)
        return got

    monkeypatch.setattr(modcache, "load", load)
    monkeypatch.setattr(modcache, "trim", lambda: trims.append(1))

    def compile() -> wasmtime.Module:
        made.append(wasmtime.Module(engine, wasm))
        return made[-1]

    served = _cached(tmp_path / "m.cwasm", sha, engine, compile)
    assert len(made) == 1 and served is not made[0]
    assert loads[0] is None and loads[-1] is served  # a miss, then the stored entry
    assert trims == [1] and [e.name for e in served.exports] == ["f"]
    # An entry that cannot be stored: the compiled module serves, nothing is loaded again.
    loads.clear()
    monkeypatch.setattr(modcache, "store", lambda *args: False)
    again = _cached(tmp_path / "other.cwasm", sha, engine, compile)
    assert again is made[-1] and loads == [None]


def test_the_module_an_engine_compiled_is_freed_once_its_entry_serves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 63: an engine's modules free nothing when dropped (a finalizer does:
    # _wasmtime.SharedModule), and the module compiled before its stored entry replaced it
    # had none: a cold host kept every optimized compile's code mapped (anonymous r-x
    # memory, 94 MiB of the 20 smallest demo plugins) beside the entry that served.
    from omnicore.sandbox import _wasmtime

    freed: list[int] = []
    real = _wasmtime.module_delete

    def module_delete(ptr: int) -> None:
        freed.append(ptr)
        real(ptr)

    monkeypatch.setattr(_wasmtime, "module_delete", module_delete)
    with SandboxEngine(cache_dir=tmp_path / "cache",
                       module_key=modkey.ModuleKey(os.urandom(32), "test")) as engine:
        wasm = _wasm()
        served = engine.compile(wasm)
        gc.collect()
        assert len(freed) == 1  # the compiled one, dropped for the stored entry
        assert _wasmtime.address_of(served) not in freed
        again = engine.compile(wasm)
        assert again is served  # shared while held
        del served, again
        gc.collect()
        assert len(freed) == 2  # and the entry's, once nothing holds it


def test_trim_returns_memory_to_the_system_without_failing() -> None:
    modcache.trim()
    modcache.trim()


# -- one compile of an entry at a time --------------------------------------------------------

def _module_parts(tmp_path: Path) -> tuple[Path, str, wasmtime.Engine,
                                           Callable[[], wasmtime.Module]]:
    engine = wasmtime.Engine()
    wasm = wasmtime.wat2wasm('(module (func (export "f")))')
    (tmp_path / "cache").mkdir(mode=0o700)
    return (tmp_path / "cache" / "m.cwasm", hashlib.sha256(wasm).hexdigest(), engine,
            lambda: wasmtime.Module(engine, wasm))


def _contention(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set when a compile finds the entry's lock held by another (and so waits)."""
    seen, real = threading.Event(), fcntl.flock

    def flock(fd: int, op: int) -> None:
        try:
            real(fd, op)
        except BlockingIOError:
            seen.set()
            raise

    monkeypatch.setattr(modcache.fcntl, "flock", flock)
    return seen


def test_an_entry_is_compiled_once_while_another_compile_of_it_waits(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two compiles of one entry at once (two hosts on one cache, two test workers, two
    threads): the second waits on the first's lock, then loads what it stored."""
    entry, sha, load, compile = _module_parts(tmp_path)
    contended, release = _contention(monkeypatch), threading.Event()
    made: list[str] = []
    got: dict[str, wasmtime.Module] = {}

    def held_open() -> wasmtime.Module:
        made.append("first")
        assert release.wait(60)
        return compile()

    def second() -> wasmtime.Module:
        made.append("second")
        return compile()

    first = threading.Thread(target=lambda: got.update(
        first=_cached(entry, sha, load, held_open)))
    first.start()
    eventually(lambda: made == ["first"], "the first compile under way")
    other = threading.Thread(target=lambda: got.update(
        second=_cached(entry, sha, load, second)))
    other.start()
    assert contended.wait(60), "the second compile never met the first's lock"
    release.set()
    first.join(60)
    other.join(60)
    assert made == ["first"]
    assert [e.name for e in got["second"].exports] == ["f"]
    assert sorted(p.name for p in entry.parent.iterdir()) == ["m.cwasm", "m.cwasm.mac"]


def test_a_compile_that_holds_its_lock_too_long_is_compiled_beside(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """A stopped or stuck compiler elsewhere costs the wait, not the host's start."""
    entry, sha, load, compile = _module_parts(tmp_path)
    monkeypatch.setattr(modcache, "COMPILE_WAIT_S", 0.2)
    lock = os.open(entry.with_name(f".{entry.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(lock, fcntl.LOCK_EX)  # held by "another process" that never finishes
    try:
        module = _cached(entry, sha, load, compile)
    finally:
        os.close(lock)
    assert [e.name for e in module.exports] == ["f"] and entry.is_file()
    assert "has compiled m.cwasm for 0 s; compiling it here too" in caplog.text


def test_a_failed_compile_leaves_no_lock_behind(tmp_path: Path) -> None:
    entry, sha, load, _compile = _module_parts(tmp_path)

    def broken() -> wasmtime.Module:
        raise wasmtime.WasmtimeError("not wasm")

    with pytest.raises(wasmtime.WasmtimeError):
        _cached(entry, sha, load, broken)
    assert list(entry.parent.iterdir()) == []
