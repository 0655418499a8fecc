"""The compiled-module cache attacked (issue 61 item 1): cases test_modcache_trust.py does not
cover, as whoever can write the shared cache folder, as another local user, and as an
operator following the docs.

The MAC keeps forged code out; what these cases look for is everything around it: a file in
the cache that is not a file (a FIFO, a device, a directory, a link), one far larger than any
entry (a sparse file costs its writer nothing), a file changed between the check and the
deserialize, writers racing, a lock someone holds, a key the folder holds or anyone could
guess. Each ends with the genuine plugin answering (or the command refusing, named), within
a bound of time and memory.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import logging
import os
import stat
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from wasmtime import component as cm

from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import ConfigError
from omnicore.sandbox import PluginModule, PluginRuntime, SandboxEngine, modcache, modkey
from omnicore.sandbox.component import compiled as component_compiled
from omnicore.sandbox.modkey import ModuleKey
from tests.compiler import BASELINE
from tests.guest_wat import ALLOC, plugin_wasm


def _greeter(answer: str, extra: str = "") -> bytes:
    return plugin_wasm("greeter", f"""
(module
  (memory (export "memory") 2)
  {ALLOC}
  (data (i32.const 0x100) "{answer}")
  (func (export "greet") (param i32 i32) (result i64)
    {extra}
    (i64.or (i64.shl (i64.const 0x100) (i64.const 32)) (i64.const {len(answer)})))
)""")


GENUINE = _greeter("Hello, world")
FORGED = _greeter("Pwned", extra="(drop (i32.add (i32.const 1) (i32.const 2)))")
SHA = hashlib.sha256(GENUINE).hexdigest()
GiB = 1 << 30


def _mac_of(entry: Path) -> Path:
    return entry.with_name(entry.name + ".mac")


def _greet(cache: Path, wasm: bytes = GENUINE, **engine: Any) -> bytes:
    engine.setdefault("baseline", BASELINE)
    with SandboxEngine(cache_dir=cache, **engine) as eng:
        module = PluginModule.load(eng, wasm)
        assert isinstance(module, PluginModule)
        rt = PluginRuntime(eng, module, builtin_registry())
        try:
            return rt.call("greet", b"")
        finally:
            rt.close()


def _entry_path(cache: Path, wasm: bytes = GENUINE) -> Path:
    with SandboxEngine(cache_dir=cache, baseline=BASELINE) as eng:
        path = eng.cache_path(hashlib.sha256(wasm).hexdigest())
    assert path is not None
    return path


def _within(seconds: float, run: Callable[[], Any],
            unblock: Callable[[], None] = lambda: None) -> Any:
    """What ``run()`` returns (or raises) within ``seconds``; a failure when it is still
    running then (``unblock()`` is called so its thread ends)."""
    done: dict[str, Any] = {}

    def target() -> None:
        try:
            done["value"] = run()
        except BaseException as exc:  # handed to the test
            done["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        unblock()
        thread.join(30)
        pytest.fail(f"still blocked after {seconds} s")
    if "error" in done:
        raise done["error"]
    return done["value"]


def _writer_for(fifo: Path) -> Callable[[], None]:
    """Opens the FIFO's write end and closes it: a reader blocked on it sees the end."""
    def unblock() -> None:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass
    return unblock


def _sparse(path: Path, size: int) -> None:
    with open(path, "wb") as fh:
        fh.truncate(size)


@pytest.fixture
def warnings(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.WARNING, logger="omnicore.sandbox"):
        yield caplog


@pytest.fixture
def copied(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """What the module cache copies into memory with sendfile, each call's count; a copy of
    more than 64 MiB at once fails the test before it is made (no greeter's entry is near)."""
    counts: list[int] = []
    real = os.sendfile

    def sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        counts.append(count)
        assert count <= 64 << 20, f"copying {count} bytes of an entry into memory"
        return real(out_fd, in_fd, offset, count)

    monkeypatch.setattr(os, "sendfile", sendfile)
    return counts


# -- files that are not entries: FIFOs, devices, directories, links ---------------------------

def test_an_entry_that_is_a_fifo_does_not_hang_the_host(
        tmp_path: Path, warnings: pytest.LogCaptureFixture) -> None:
    """A FIFO in the entry's place: opening it for reading waits for a writer that never
    comes, so a host starting would hang there for good."""
    cache = tmp_path / "cache"
    assert _greet(cache) == b"Hello, world"
    entry = _entry_path(cache)
    entry.unlink()
    os.mkfifo(entry, 0o600)
    assert _within(10, lambda: _greet(cache), _writer_for(entry)) == b"Hello, world"
    assert "is refused" in warnings.text
    assert stat.S_ISREG(entry.lstat().st_mode)  # replaced by the entry compiled again


def test_a_mac_that_is_a_fifo_does_not_hang_the_host(
        tmp_path: Path, warnings: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    assert _greet(cache) == b"Hello, world"
    mac = _mac_of(_entry_path(cache))
    mac.unlink()
    os.mkfifo(mac, 0o600)
    assert _within(10, lambda: _greet(cache), _writer_for(mac)) == b"Hello, world"
    assert "is refused" in warnings.text
    assert stat.S_ISREG(mac.lstat().st_mode)


def test_a_mac_that_is_an_endless_stream_is_not_read_to_its_end(
        tmp_path: Path, warnings: pytest.LogCaptureFixture) -> None:
    """A FIFO in the MAC's place with a writer behind it that never stops (a /dev/zero of
    one's own, without the privilege a device node takes): read to its end, it fills the
    host's memory (64 MiB here, then the writer gives up)."""
    cache = tmp_path / "cache"
    assert _greet(cache) == b"Hello, world"
    mac = _mac_of(_entry_path(cache))
    mac.unlink()
    os.mkfifo(mac, 0o600)
    stop = threading.Event()

    def endless() -> None:
        try:
            fd = os.open(mac, os.O_WRONLY)  # waits for a reader
        except OSError:
            return
        try:
            chunk = bytes(1 << 20)
            for _ in range(64):
                if stop.is_set():
                    break
                os.write(fd, chunk)
        except OSError:  # EPIPE: the reader closed it
            pass
        finally:
            os.close(fd)

    writer = threading.Thread(target=endless, daemon=True)
    writer.start()
    tracemalloc.start()
    try:
        assert _within(10, lambda: _greet(cache), _writer_for(mac)) == b"Hello, world"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        stop.set()
        with contextlib.suppress(OSError):  # a writer still waiting for a reader
            os.close(os.open(mac, os.O_RDONLY | os.O_NONBLOCK))
        writer.join(10)
    assert peak < 16 << 20, peak
    assert "is refused" in warnings.text


def test_an_entry_that_is_a_directory_is_compiled_around(
        tmp_path: Path, warnings: pytest.LogCaptureFixture) -> None:
    """The entry's name taken by a directory: it cannot be replaced, so every load compiles;
    the plugin answers, and the refusal says why."""
    cache = tmp_path / "cache"
    entry = _entry_path(cache)
    cache.mkdir(mode=0o700, exist_ok=True)
    entry.mkdir()
    _mac_of(entry).mkdir()
    assert _greet(cache) == b"Hello, world"
    assert "is refused" in warnings.text


def test_links_in_the_cache_are_never_followed_nor_written_through(
        tmp_path: Path, warnings: pytest.LogCaptureFixture) -> None:
    """The entry, its MAC and its compile lock as links to the victim's own files (the forged
    entry with its MAC; a file the host's user owns): none is read as an entry, written
    through, truncated or removed; the links are replaced by the entry compiled again."""
    cache = tmp_path / "cache"
    elsewhere = tmp_path / "attacker"
    assert _greet(elsewhere, FORGED) == b"Pwned"
    forged = _entry_path(elsewhere, FORGED)
    entry = _entry_path(cache)
    entry.symlink_to(forged)
    _mac_of(entry).symlink_to(_mac_of(forged))
    victim = tmp_path / "precious.txt"
    victim.write_text("the user's own file")
    lock = entry.with_name(f".{entry.name}.lock")
    lock.symlink_to(victim)
    forged_bytes = forged.read_bytes()
    assert _greet(cache) == b"Hello, world"
    assert "is refused" in warnings.text
    assert victim.read_text() == "the user's own file"
    assert forged.read_bytes() == forged_bytes
    assert not entry.is_symlink() and not _mac_of(entry).is_symlink()
    warnings.clear()
    assert _greet(cache) == b"Hello, world"
    assert not warnings.records  # trusted from now on


# -- sizes: an entry or MAC far larger than any (a sparse file costs nothing to make) ----------

def test_a_huge_sparse_entry_is_refused_unread(
        tmp_path: Path, warnings: pytest.LogCaptureFixture, copied: list[int]) -> None:
    """An 8 GiB sparse file in the entry's place: copied into memory before the MAC is
    checked, it would take 8 GiB of the host's memory (a container's limit: killed, and
    killed again at each restart, since the entry is never replaced)."""
    cache = tmp_path / "cache"
    assert _greet(cache) == b"Hello, world"
    entry = _entry_path(cache)
    _sparse(entry, 8 * GiB)
    started = time.monotonic()
    assert _greet(cache) == b"Hello, world"
    assert time.monotonic() - started < 10
    assert "is refused" in warnings.text and "bytes" in warnings.text
    assert entry.stat().st_size < GiB  # replaced


def test_an_entry_over_the_bound_is_refused_before_it_is_copied(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        warnings: pytest.LogCaptureFixture, copied: list[int]) -> None:
    """The bound itself: an entry over ``MAX_ENTRY_BYTES`` is not copied at all."""
    cache = tmp_path / "cache"
    assert _greet(cache) == b"Hello, world"
    entry = _entry_path(cache)
    monkeypatch.setattr(modcache, "MAX_ENTRY_BYTES", 1 << 20, raising=False)
    _sparse(entry, 2 << 20)
    copied.clear()
    assert _greet(cache) == b"Hello, world"
    assert sum(copied) < 1 << 20, copied
    assert "is refused" in warnings.text


def test_a_huge_sparse_mac_is_not_read_whole(
        tmp_path: Path, warnings: pytest.LogCaptureFixture) -> None:
    """A MAC is 48 bytes; a 64 MiB sparse one (or 64 GiB) must not be read into memory."""
    cache = tmp_path / "cache"
    assert _greet(cache) == b"Hello, world"
    mac = _mac_of(_entry_path(cache))
    _sparse(mac, 64 << 20)
    tracemalloc.start()
    try:
        assert _greet(cache) == b"Hello, world"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak
    assert "is refused" in warnings.text


@pytest.mark.parametrize("mac", [b"omniCW1\n" + bytes(40), b"\0" * 48,
                                 modcache.MAGIC + bytes(40) + b"x"])
def test_a_mac_of_the_right_length_or_one_more_with_the_wrong_contents_is_refused(
        tmp_path: Path, warnings: pytest.LogCaptureFixture, mac: bytes) -> None:
    cache = tmp_path / "cache"
    assert _greet(cache) == b"Hello, world"
    _mac_of(_entry_path(cache)).write_bytes(mac)
    assert _greet(cache) == b"Hello, world"
    assert "is refused" in warnings.text


# -- omnicore precompile --from: a folder of the user's, holding traps -------------------------

def _adopting(tmp_path: Path) -> tuple[Path, Path, modcache.Origin, ModuleKey]:
    with SandboxEngine(cache_dir=tmp_path / "image", baseline=BASELINE) as eng:
        path, origin, key = eng.cache_path(SHA), eng.origin(SHA), eng.module_key
    assert path is not None and key is not None
    source = tmp_path / "from"
    source.mkdir(mode=0o700)
    return source, path, origin, key


def test_precompile_from_a_folder_holding_a_fifo_does_not_hang(tmp_path: Path) -> None:
    source, path, origin, key = _adopting(tmp_path)
    fifo = source / path.name
    os.mkfifo(fifo, 0o600)
    with pytest.raises(ConfigError, match="not a regular file"):
        _within(10, lambda: modcache.adopt(source, path, origin, key), _writer_for(fifo))
    assert not path.exists()


def test_precompile_from_a_folder_holding_a_fifo_mac_does_not_hang(tmp_path: Path) -> None:
    source, path, origin, key = _adopting(tmp_path)
    assert _greet(source) == b"Hello, world"
    mac = _mac_of(source / path.name)
    mac.unlink()
    os.mkfifo(mac, 0o600)
    with pytest.raises(ConfigError, match="not a regular file"):
        _within(10, lambda: modcache.adopt(source, path, origin, key), _writer_for(mac))


def test_precompile_from_a_folder_holding_a_huge_entry_does_not_read_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source, path, origin, key = _adopting(tmp_path)
    monkeypatch.setattr(modcache, "MAX_ENTRY_BYTES", 8 << 20, raising=False)
    _sparse(source / path.name, 64 << 20)
    _mac_of(source / path.name).write_bytes(b"x" * 48)
    tracemalloc.start()
    try:
        with pytest.raises(ConfigError, match="bytes"):
            modcache.adopt(source, path, origin, key)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak


# -- time: the file changed between the check and the deserialize; writers racing ------------

def test_an_entry_rewritten_in_place_after_its_check_is_not_what_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        warnings: pytest.LogCaptureFixture) -> None:
    """The writer waits for the MAC check to pass, then writes the forged code into the very
    file (same inode, no rename) and its MAC beside it: wasmtime gets the checked copy."""
    cache = tmp_path / "cache"
    assert _greet(cache) == b"Hello, world"
    elsewhere = tmp_path / "attacker"
    assert _greet(elsewhere, FORGED) == b"Pwned"
    forged = _entry_path(elsewhere, FORGED)
    forged_bytes, forged_mac = forged.read_bytes(), _mac_of(forged).read_bytes()
    entry = _entry_path(cache)
    real = modcache._why_refused
    swapped = []

    def check_then_swap(*args: Any) -> str | None:
        why = real(*args)
        with open(entry, "r+b") as fh:
            fh.write(forged_bytes)
            fh.truncate()
        _mac_of(entry).write_bytes(forged_mac)
        swapped.append(why)
        return why

    monkeypatch.setattr(modcache, "_why_refused", check_then_swap)
    assert _greet(cache) == b"Hello, world"
    assert swapped == [None]  # the genuine entry passed, then changed under the reader


def test_writers_racing_on_one_entry_never_get_a_forgery_loaded(tmp_path: Path) -> None:
    """A genuine host storing its entry again and again, a writer of the folder putting the
    forged entry there with every MAC it has (its own, the genuine one), files replaced by
    rename or written in place, and a reader loading all the while: whatever mix it reads is
    refused unless it is the genuine entry whole, with its MAC."""
    cache = tmp_path / "cache"
    assert _greet(cache) == b"Hello, world"
    assert _greet(tmp_path / "attacker", FORGED) == b"Pwned"
    forged = _entry_path(tmp_path / "attacker", FORGED)
    entry = _entry_path(cache)
    genuine_bytes, genuine_mac = entry.read_bytes(), _mac_of(entry).read_bytes()
    forged_bytes, forged_mac = forged.read_bytes(), _mac_of(forged).read_bytes()
    key = modkey.from_env()
    assert key is not None
    with SandboxEngine(cache_dir=cache, baseline=BASELINE) as eng:
        origin, engine = eng.origin(SHA), eng.wasmtime
    accepted: list[bytes] = []

    class Recording:
        @staticmethod
        def deserialize(engine: wasmtime.Engine, encoded: bytes) -> wasmtime.Module:
            accepted.append(bytes(encoded))
            return wasmtime.Module.deserialize(engine, encoded)

        @staticmethod
        def deserialize_file(engine: wasmtime.Engine, path: str) -> wasmtime.Module:
            with open(path, "rb") as fh:
                accepted.append(fh.read())
            return wasmtime.Module.deserialize_file(engine, path)

    stop = threading.Event()

    def host() -> None:
        while not stop.is_set():
            modcache.store(entry, origin, genuine_bytes, key)

    def attacker() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            if n % 3 == 0:  # in place, half written
                with open(entry, "r+b") as fh:
                    fh.write(forged_bytes[:len(forged_bytes) // 2])
            else:
                tmp = cache / f".evil-{n}"
                tmp.write_bytes(forged_bytes)
                os.replace(tmp, entry)
            mac = forged_mac if n % 2 else genuine_mac
            tmp = cache / f".evil-mac-{n}"
            tmp.write_bytes(mac)
            os.replace(tmp, _mac_of(entry))

    threads = [threading.Thread(target=host), threading.Thread(target=attacker)]
    for t in threads:
        t.start()
    loads = 0
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            modcache.load(entry, origin, engine, Recording, key)
            loads += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert loads > 20
    assert all(body == genuine_bytes for body in accepted), \
        f"{sum(b != genuine_bytes for b in accepted)} of {len(accepted)} loads took another body"


def test_a_compile_lock_someone_holds_delays_a_start_by_the_bound_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        warnings: pytest.LogCaptureFixture) -> None:
    """A writer of the folder holding an entry's compile lock for good (and deleting the
    entry): a host waits ``COMPILE_WAIT_S`` (120 s; 1 s here), then compiles it itself. The
    bound is what stops a held lock from stopping a start; it is not lower because a Ruby
    interpreter takes that long to compile on a loaded machine."""
    cache = tmp_path / "cache"
    assert _greet(cache) == b"Hello, world"
    entry = _entry_path(cache)
    entry.unlink()
    monkeypatch.setattr(modcache, "COMPILE_WAIT_S", 1.0)
    fd = os.open(entry.with_name(f".{entry.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        started = time.monotonic()
        assert _within(20, lambda: _greet(cache)) == b"Hello, world"
        assert 1.0 <= time.monotonic() - started < 15
    finally:
        os.close(fd)
    assert "compiling it here too" in warnings.text


# -- kinds: a core module's entry where a component's belongs --------------------------------

def test_a_core_entry_under_a_components_name_is_refused_before_wasmtime(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        warnings: pytest.LogCaptureFixture) -> None:
    """The genuine core module's entry and its valid MAC, copied to the component entry's
    name for the same digest: the MAC covers the kind, so wasmtime's component deserializer
    never sees the bytes."""
    cache = tmp_path / "cache"
    assert _greet(cache) == b"Hello, world"
    core = _entry_path(cache)
    with SandboxEngine(cache_dir=cache, baseline=BASELINE) as eng:
        path = component_compiled.cache_path(eng, SHA)
        origin = component_compiled.origin(eng, SHA)
        key = eng.module_key
        assert path is not None and key is not None
        path.write_bytes(core.read_bytes())
        _mac_of(path).write_bytes(_mac_of(core).read_bytes())
        seen = []

        def spy(*args: Any) -> None:
            seen.append(args)
            raise AssertionError("deserialized")

        monkeypatch.setattr(cm.Component, "deserialize", classmethod(spy))
        monkeypatch.setattr(cm.Component, "deserialize_file", classmethod(spy))
        assert modcache.load(path, origin, eng.components, cm.Component, key) is None
    assert not seen
    assert "MAC does not match" in warnings.text


# -- keys: where the folder holds it, one anyone could guess, an empty one --------------------

def test_a_key_kept_in_the_entries_folder_is_not_used_by_any_cache(
        tmp_path: Path, warnings: pytest.LogCaptureFixture) -> None:
    """The engine refuses a key inside its cache (test_modcache_trust.py); the other doors
    (the JS and Ruby runtime caches: modcache.compiled with a path beside their runtime)
    must too: whoever writes that folder would read the key and sign their own code."""
    folder = tmp_path / "runtime"
    folder.mkdir(mode=0o700)
    key = modkey.from_file(folder / "sub" / "module.key")
    engine = wasmtime.Engine()
    path = folder / "runtime.cwasm"
    origin = modcache.Origin(SHA, "runtime/test")
    made = modcache.compiled(path, origin, engine, wasmtime.Module,
                             lambda: wasmtime.Module(engine, GENUINE), key)
    assert isinstance(made, wasmtime.Module)
    assert not path.exists()  # neither written nor read
    assert "inside" in warnings.text


def test_a_key_file_reached_through_a_link_into_the_cache_is_not_used(
        tmp_path: Path, warnings: pytest.LogCaptureFixture) -> None:
    """The data dir (where a host keeps its key file when the secret store cannot be read)
    is a link into the cache folder: the key is inside it all the same."""
    cache = tmp_path / "cache"
    (cache / "data").mkdir(parents=True, mode=0o700)
    cache.chmod(0o700)
    (tmp_path / "data").symlink_to(cache / "data")
    inside = modkey.from_file(tmp_path / "data" / "module.key")
    with SandboxEngine(cache_dir=cache, module_key=lambda: inside, baseline=BASELINE) as eng:
        assert eng.module_key is None
    assert "inside the module cache" in warnings.text


@pytest.mark.parametrize("secret", [bytes(32), b"correct horse battery staple!!!!",
                                    b"\x01\x02" * 16],
                         ids=["zeros", "passphrase", "repeated"])
def test_a_module_key_anyone_could_guess_is_not_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        warnings: pytest.LogCaptureFixture, secret: bytes) -> None:
    """``OMNICORE_MODULE_KEY`` is 32 bytes in base64, but not 32 random ones: zeros, a
    passphrase, a short pattern. Whoever writes the cache guesses it and signs their own
    code; the host compiles every module instead, and says why."""
    monkeypatch.setenv(modkey.ENV_KEY, base64.b64encode(secret).decode())
    cache = tmp_path / "cache"
    assert _greet(cache) == b"Hello, world"
    assert not list(cache.glob("*.cwasm"))
    assert "random" in warnings.text


def test_an_empty_module_key_variable_is_unset_not_a_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """compose.yaml passes ``OMNICORE_MODULE_KEY: ${OMNICORE_MODULE_KEY:-}``: empty means the
    secret store's key, never an empty (or default) secret."""
    monkeypatch.setenv(modkey.ENV_KEY, "")
    values: dict[str, bytes] = {}

    class Store:
        def get(self, name: str) -> bytes | None:
            return values.get(name)

        def set(self, name: str, value: bytes | str) -> None:
            values[name] = value.encode() if isinstance(value, str) else value

    key = modkey.app_key(Store, tmp_path / "data")
    assert key.source == "secret store" and len(key.secret) == 32
    monkeypatch.setenv(modkey.ENV_KEY, "   ")
    with pytest.raises(ConfigError, match="32 random bytes"):
        modkey.app_key(Store, tmp_path / "data")


# -- more: the window between an entry's two files, a FIFO lock, keys by relative path -------

def test_a_reader_between_an_entrys_two_renames_raises_no_alarm(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        warnings: pytest.LogCaptureFixture) -> None:
    """Hosts sharing a folder start together: one stores a new entry while another looks for
    it. Stored entry first, a reader between the two renames (the MAC's fsync: milliseconds on
    a busy disk) found an entry with no MAC and reported it refused, counted in
    omnicore_module_cache_rejected_total as if forged. The MAC goes first: the reader then
    finds no entry yet, a plain miss."""
    cache = tmp_path / "cache"
    with SandboxEngine(cache_dir=cache, baseline=BASELINE) as eng:
        path, origin, key = eng.cache_path(SHA), eng.origin(SHA), eng.module_key
        assert path is not None and key is not None
        real = modcache._replace
        seen: list[object] = []

        def replace_then_look(target: Path, data: bytes) -> None:
            real(target, data)
            if not seen:  # a reader in the window after the first rename
                seen.append(modcache.load(path, origin, eng.wasmtime, wasmtime.Module, key))

        monkeypatch.setattr(modcache, "_replace", replace_then_look)
        before = modcache.rejected()
        module = PluginModule.load(eng, GENUINE)
        assert isinstance(module, PluginModule)
    assert seen == [None]
    assert modcache.rejected() == before and not warnings.records
    assert _greet(cache) == b"Hello, world" and not warnings.records


def test_a_compile_lock_that_is_a_fifo_neither_hangs_nor_breaks_a_compile(
        tmp_path: Path, warnings: pytest.LogCaptureFixture) -> None:
    cache = tmp_path / "cache"
    entry = _entry_path(cache)
    lock = entry.with_name(f".{entry.name}.lock")
    os.mkfifo(lock, 0o600)
    assert _within(10, lambda: _greet(cache), _writer_for(lock)) == b"Hello, world"
    assert entry.is_file()
    warnings.clear()
    assert _greet(cache) == b"Hello, world" and not warnings.records


def test_a_key_file_named_by_a_relative_path_inside_the_cache_is_not_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        warnings: pytest.LogCaptureFixture) -> None:
    """``XDG_DATA_HOME=.`` (relative: the XDG spec says to ignore it; omnicore takes it) in
    the cache folder: the user's key file is made inside the cache, and its name, relative,
    slipped past the check for an absolute one."""
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    monkeypatch.delenv(modkey.ENV_KEY)
    monkeypatch.setenv("XDG_DATA_HOME", ".")
    monkeypatch.chdir(cache)
    assert _greet(cache) == b"Hello, world"
    assert (cache / "omnicore" / "module.key").is_file()  # where the key was made
    assert not list(cache.glob("*.cwasm"))  # but it signs nothing here
    assert "inside" in warnings.text


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand a file to another user")
def test_a_key_file_another_user_owns_is_not_used_even_by_root(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        warnings: pytest.LogCaptureFixture) -> None:
    """Another user planted the key file (mode 0600, theirs) where a host running as root
    looks for it: they know the key. Refused: the cache is not used."""
    monkeypatch.delenv(modkey.ENV_KEY)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "share"))
    planted = modkey.user_key_path()
    modkey.from_file(planted)
    os.chown(planted, 65534, 65534)
    cache = tmp_path / "cache"
    assert _greet(cache) == b"Hello, world"
    assert "no compiled-module key" in warnings.text and "not this user's alone" in warnings.text
    assert not list(cache.glob("*.cwasm"))


# -- the image's baked modules (sandbox.baked_dir) --------------------------------------------

def _bake(folder: Path, *wasms: bytes) -> ModuleKey:
    """A baked folder as the image build makes it: compiled with a key of its own, the key
    beside the folder (modkey.baked_key_path), neither writable but by their owner."""
    key = ModuleKey.new()
    with SandboxEngine(cache_dir=folder, baseline=BASELINE, module_key=key) as eng:
        for wasm in wasms:
            PluginModule.load(eng, wasm)
    modkey.baked_key_path(folder).write_text(key.encoded() + "\n")
    return key


def test_baked_modules_load_warm_with_any_host_key_and_nothing_is_copied_into_the_cache(
        tmp_path: Path, warnings: pytest.LogCaptureFixture) -> None:
    baked, cache = tmp_path / "baked", tmp_path / "cache"
    _bake(baked, GENUINE)
    compiles = modcache.rejected()
    assert _greet(cache, module_key=ModuleKey.new(), baked_dir=baked) == b"Hello, world"
    assert modcache.rejected() == compiles
    assert not list(cache.glob("*.cwasm")), "a baked entry was compiled again or copied"
    assert "refused" not in warnings.text


def test_the_baked_key_does_not_authenticate_the_shared_cache(
        tmp_path: Path, warnings: pytest.LogCaptureFixture) -> None:
    """Whoever has the image has its baked key: an entry they plant in the cache volume,
    sealed with it, is refused there (the cache keeps the hosts' key) and the genuine plugin
    compiled."""
    baked, cache, evil = tmp_path / "baked", tmp_path / "cache", tmp_path / "evil"
    image_key = _bake(baked)  # the image's key, nothing baked for this plugin
    with SandboxEngine(cache_dir=evil, baseline=BASELINE, module_key=image_key) as eng:
        PluginModule.load(eng, FORGED)
        forged = eng.cache_path(hashlib.sha256(FORGED).hexdigest())
        assert forged is not None
        entry = _entry_path(cache)
        cache.mkdir(mode=0o700, exist_ok=True)
        assert modcache.store(entry, eng.origin(SHA), forged.read_bytes(), image_key)
    assert _greet(cache, module_key=ModuleKey.new(), baked_dir=baked) == b"Hello, world"
    assert "refused" in warnings.text


def test_a_baked_folder_or_key_others_can_write_is_not_used(
        tmp_path: Path, warnings: pytest.LogCaptureFixture) -> None:
    baked, cache = tmp_path / "baked", tmp_path / "cache"
    _bake(baked, GENUINE)
    os.chmod(baked, 0o777)
    assert _greet(cache, module_key=ModuleKey.new(), baked_dir=baked) == b"Hello, world"
    assert "baked compiled modules" in warnings.text and "not used" in warnings.text
    assert list(cache.glob("*.cwasm")), "compiled into the host's cache instead"
    os.chmod(baked, 0o755)
    os.chmod(modkey.baked_key_path(baked), 0o666)
    with SandboxEngine(cache_dir=cache, baseline=BASELINE, baked_dir=baked,
                       module_key=ModuleKey.new()) as eng:
        assert eng.baked(eng.cache_path(SHA)) is None
