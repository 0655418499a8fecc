"""The compiled-module cache on disk: entries a host compiled, authenticated before use.

wasmtime runs whatever native code it deserializes, and the cache folder may be shared
between hosts (a compose volume, a Kubernetes claim): whoever can write it could otherwise
run code in every host that reads it. So beside each entry ``<key>.cwasm`` (wasmtime's own
bytes, untouched) lies ``<key>.cwasm.mac``::

    MAGIC (8) | id of the module key (8) | HMAC-SHA256 (32)

keyed by a :class:`~omnicore.sandbox.modkey.ModuleKey` the folder does not hold, over the
magic, the key id, what the entry was compiled from (:class:`Origin`: the wasm's digest and
the engine's configuration) and the entry's bytes. :func:`load` is the one door through
which compiled code reaches wasmtime: it copies the entry once into memory of its own (on
Linux a sealed memfd, which wasmtime then maps as it would the file), checks the MAC over
that copy and deserializes the same copy (the file could change in between). An entry that
is absent is compiled; one that fails (damaged, truncated, forged, made with another key or
for another module or engine, another entry's MAC beside it) is logged
once naming it, counted (:func:`rejected`), compiled again and replaced. :func:`store`
writes each file to a temp file, fsyncs it and renames it into place, so a reader never sees
half of one.

The MAC costs about what reading the entry costs (≈0.6 ms per MB). A cache directory
anyone but the host's user can write is still refused (:func:`check_cache_dir`): the MAC
keeps out forged code, the mode keeps a neighbour from filling the disk or the warnings.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import hmac
import logging
import mmap
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import wasmtime

from omnicore.errors import ConfigError
from omnicore.sandbox.modkey import ModuleKey

__all__ = ["MAGIC", "MAX_ENTRY_BYTES", "Origin", "adopt", "check_cache_dir", "compiled", "load",
           "rejected", "store"]

MAGIC = b"omniCW2\n"
_MAC_BYTES = len(MAGIC) + 8 + 32

#: The largest entry read (or written). An entry is copied into memory before its MAC is
#: checked, and a sparse file of any size costs whoever writes the folder nothing: without a
#: bound, an 8 GiB one in an entry's place took 8 GiB of the host's memory at each start (a
#: container killed, then killed again: the entry is only replaced once it was refused). The
#: largest seen is 80 MB (a Python component); a module compiled larger is compiled each time.
MAX_ENTRY_BYTES = 1 << 30

_log = logging.getLogger("omnicore.sandbox")


class _Compiled(Protocol):
    def serialize(self) -> bytes | bytearray: ...


C = TypeVar("C", bound=_Compiled)
C_co = TypeVar("C_co", covariant=True)


class Kind(Protocol[C_co]):
    """What deserializes an entry: ``wasmtime.Module`` (or a subclass), a component's
    ``Component``."""

    def deserialize(self, engine: wasmtime.Engine, encoded: bytes, /) -> C_co: ...

    def deserialize_file(self, engine: wasmtime.Engine, path: str, /) -> C_co: ...


@dataclass(frozen=True)
class Origin:
    """What an entry was compiled from, covered by its MAC: an entry made from other bytes,
    or by an engine with other settings, is not this one even with a valid MAC."""

    #: The sha256 of the wasm, hex.
    wasm_sha256: str
    #: The engine's configuration, as the caller fingerprints it (``SandboxEngine.config_key``
    #: and what else changes the code: a component's faces).
    config: str

    def encode(self) -> bytes:
        config = self.config.encode()
        return bytes.fromhex(self.wasm_sha256) + len(config).to_bytes(4, "big") + config


_rejected = 0
_rejected_lock = threading.Lock()


def rejected() -> int:
    """How many entries this process refused since it started (recompiled and replaced):
    ``omnicore_module_cache_rejected_total``."""
    return _rejected


def _mac(key: ModuleKey, origin: Origin, body: bytes | mmap.mmap) -> bytes:
    m = hmac.new(key.secret, MAGIC + bytes.fromhex(key.id), hashlib.sha256)
    m.update(origin.encode())
    m.update(body)
    return m.digest()


def _seal(key: ModuleKey, origin: Origin, body: bytes) -> bytes:
    return MAGIC + bytes.fromhex(key.id) + _mac(key, origin, body)


def _why_refused(key: ModuleKey, origin: Origin, body: bytes | mmap.mmap,
                 mac: bytes) -> str | None:
    """Why ``body`` with the MAC file ``mac`` is not an entry ``key`` made for ``origin``."""
    if len(mac) != _MAC_BYTES or not mac.startswith(MAGIC):
        return "its MAC file is not one of this omnicore"
    made_with = mac[len(MAGIC):len(MAGIC) + 8].hex()
    if made_with != key.id:
        return (f"made with module key {made_with}, not this host's ({key.id}, from "
                f"{key.source}): the key was rotated, or another host has another")
    if not hmac.compare_digest(mac[len(MAGIC) + 8:], _mac(key, origin, body)):
        return "its MAC does not match: the entry was altered, truncated, forged or swapped"
    return None


def _open_regular(path: Path) -> tuple[int, os.stat_result]:
    """A descriptor of the regular file ``path`` and its stat as opened; OSError otherwise.

    Not followed when a link (ELOOP), and opened without waiting: a FIFO in an entry's or a
    MAC's place made the host's start wait for good for a writer that never came. A FIFO, a
    device (an endless /dev/zero of one's own, on a volume without nodev), a directory or a
    socket is refused here, before anything is read from it."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise OSError(errno.EINVAL, "not a regular file")
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _check_size(st: os.stat_result) -> None:
    if st.st_size > MAX_ENTRY_BYTES:
        raise OSError(errno.EFBIG, f"{st.st_size} bytes, over the {MAX_ENTRY_BYTES} an entry "
                      "may take (MAX_ENTRY_BYTES): not read")


def _key_unusable(key: ModuleKey, entry: Path) -> str | None:
    """Why ``key`` cannot authenticate the entries beside ``entry``, or None.

    The engine refuses a key inside its own cache; the other doors (the JS and Ruby runtime
    caches beside their runtimes, ``--from``) did not: whoever writes the folder of the
    entries must not be able to read the key that signs them. And a key anyone could guess
    (32 bytes in base64, but zeros, a passphrase, a short pattern: what an operator types
    instead of the documented random bytes) lets whoever writes the folder sign their own
    code. 32 random bytes have under 16 distinct values, or are all printable ASCII, with a
    chance below 1e-13."""
    secret = key.secret
    if len(set(secret)) < 16 or all(0x20 <= b < 0x7F for b in secret):
        return (f"the compiled-module key {key.id} (from {key.source or 'the caller'}) is not "
                "32 random bytes (too few distinct bytes, or printable text): whoever writes "
                "the cache could guess it; make one with: python3 -c 'import os,base64;"
                "print(base64.b64encode(os.urandom(32)).decode())'")
    if key.source not in ("", "env", "secret store"):  # a key file's path
        # Relative too (XDG_DATA_HOME=. in the cache folder): it was made inside it all the
        # same, and a check of absolute names alone let it sign the folder's entries.
        source, folder = Path(key.source).resolve(), entry.parent.resolve()
        if source.is_relative_to(folder):
            return (f"the compiled-module key {source} is inside {folder}, the folder of the "
                    "entries it authenticates, where whoever writes them could read it; move "
                    "it, or set OMNICORE_MODULE_KEY")
    return None


_warned: set[str] = set()


def _unusable_logged(key: ModuleKey, entry: Path) -> bool:
    """Whether ``key`` cannot be used for ``entry`` (logged once per reason)."""
    why = _key_unusable(key, entry)
    if why is None:
        return False
    with _rejected_lock:
        first = why not in _warned
        _warned.add(why)
    if first:
        _log.warning("%s: the module cache is not used (every module is compiled)", why)
    return True


def check_cache_dir(path: Path, *, create: bool = False) -> Path:
    """``path``, made 0700 when ``create`` and missing; ConfigError naming
    ``sandbox.cache_dir`` when anyone but this user can write it. A directory that cannot be
    made is only logged: the host runs without a cache, compiling each time."""
    if create:
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            _log.warning("cannot create the module cache %s: %s (modules are compiled on every "
                         "load; set sandbox.cache_dir)", path, exc.strerror or exc)
            return path
    try:
        st = path.stat()
    except OSError:
        return path  # absent (made 0700 on first use) or unreachable (nothing is read from it)
    # Not a directory: not a cache at all, nothing is read from it.
    why = _untrusted(st, (os.geteuid(),)) if stat.S_ISDIR(st.st_mode) else None
    if why is not None:
        raise ConfigError(f"the module cache {path} {why}: whoever can write it can run code "
                          f"in this host; `chmod 700 {path}` it, or set sandbox.cache_dir to "
                          "a directory of your own", key="sandbox.cache_dir", value=str(path))
    if create and stat.S_ISDIR(st.st_mode):
        _sweep_temps(path)
    return path


#: How old a temp file of :func:`_replace` must be to be taken for one a killed process left
#: (a write of the largest entry takes seconds; a host writing one now keeps it).
STALE_TEMP_S = 3600.0
_swept: set[str] = set()


def _sweep_temps(path: Path) -> None:
    """Remove the temp files of :func:`_replace` older than :data:`STALE_TEMP_S` from the
    cache ``path``, once per process. A process killed between a temp file's write and its
    rename (an agent's SIGTERM to ``omnicore mcp`` two seconds after closing its stdin, in
    the middle of a tier-up's store; the OOM killer) left it there for good: an entry's size
    each, up to 80 MB, that nothing read or removed. Links are removed, never followed."""
    key = str(path)
    with _rejected_lock:
        if key in _swept:
            return
        _swept.add(key)
    stale = time.time() - STALE_TEMP_S
    try:
        with os.scandir(path) as found:
            for item in found:
                if not item.name.startswith(".tmp-"):
                    continue
                with contextlib.suppress(OSError):
                    if item.stat(follow_symlinks=False).st_mtime < stale:
                        os.unlink(item.path)
    except OSError as exc:  # unreadable: nothing is swept, nothing else changes
        _log.debug("module cache %s: temp files not swept: %s", path, exc)


def _untrusted(st: os.stat_result, owners: tuple[int, ...]) -> str | None:
    """Why a file or directory with this stat may hold what someone else wrote, or None."""
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid not in owners:
        return f"is owned by uid {st.st_uid}, not this user ({os.geteuid()})"
    return f"is writable by other users (mode {mode:04o})" if mode & 0o022 else None


def adopt(source: Path, path: Path, origin: Origin, key: ModuleKey,
          source_key: ModuleKey | None = None) -> bool:
    """Take the entry named like ``path`` in the directory ``source`` (another module cache:
    a build machine's, a CI's) as the entry at ``path``, when ``source_key`` (else ``key``)
    authenticates it as compiled from ``origin``, and store it with ``key``; whether it was
    taken. Another key's entries are not taken (logged): the machine that compiled them must
    have this host's key (``OMNICORE_MODULE_KEY``, :mod:`omnicore.sandbox.modkey`), or the
    caller the source's (an image build: ``omnicore precompile --from-key``).

    The directory and both files must also belong to this user or root and be writable by
    no one else (ConfigError otherwise, naming the directory).
    """
    owners = (os.geteuid(), 0)
    checked_with = source_key if source_key is not None else key
    if _unusable_logged(key, path) or _unusable_logged(checked_with, source / path.name):
        return False
    why = _untrusted(source.stat(), owners)
    entry = source / path.name
    body = mac = None
    if why is None:
        try:
            body, why = _read_owned(entry, owners, is_mac=False)
            if body is not None:
                mac, why = _read_owned(_mac_path(entry), owners, is_mac=True)
        except FileNotFoundError:
            return False
        except OSError as exc:  # ELOOP: a symbolic link, which could point anywhere; a FIFO
            why = f"{entry.name}: {exc.strerror or exc}"
    if why is not None:
        raise ConfigError(f"cannot take compiled modules from {source}: {why}: whoever can "
                          "write it can run code in this host")
    assert body is not None and mac is not None
    why = _why_refused(checked_with, origin, body, mac)
    if why is not None:
        _refused(entry, why, "not taken; compiling instead")
        return False
    store(path, origin, body, key)
    return True


def _read_owned(path: Path, owners: tuple[int, ...], *,
                is_mac: bool) -> tuple[bytes | None, str | None]:
    """The bytes of the regular file ``path`` (not followed when a link, never waited on: a
    FIFO is an OSError), or why it is not trusted (its stat as opened, so what is checked is
    what is read). A MAC is read up to one byte more than a MAC; an entry over
    ``MAX_ENTRY_BYTES`` is not read (OSError: sparse, it costs its writer nothing and this
    process all its memory)."""
    fd, st = _open_regular(path)
    with os.fdopen(fd, "rb") as fh:
        why = _untrusted(st, owners)
        if why is not None:
            return None, f"{path.name} {why}"
        if is_mac:
            return fh.read(_MAC_BYTES + 1), None
        _check_size(st)
        return fh.read(st.st_size), None


def compiled(path: Path | None, origin: Origin, engine: wasmtime.Engine, kind: Kind[C],
             compile: Callable[[], C], key: ModuleKey | None,
             baked: tuple[Path, ModuleKey] | None = None) -> C:
    """The entry at ``path`` (see :func:`load`), or else ``compile()``, stored there for the
    next time; with no ``path`` or no ``key`` (no cache), just ``compile()``. One process or
    thread at a time compiles a given entry (:func:`_compiling`): the others wait, then load
    it. ``baked``: an entry of a read-only folder a container image ships and the key its
    build made (:func:`omnicore.sandbox.modkey.baked_key`), tried first; that key is never
    used for ``path``'s folder."""
    if baked is not None and not _unusable_logged(baked[1], baked[0]):
        cached = load(baked[0], origin, engine, kind, baked[1])
        if cached is not None:
            return cached
    if path is None or key is None or _unusable_logged(key, path):
        return compile()
    cached = load(path, origin, engine, kind, key)
    if cached is not None:
        return cached
    with _compiling(path) as waited:
        if waited:  # someone else compiled it meanwhile (or gave up: then this one does)
            cached = load(path, origin, engine, kind, key)
            if cached is not None:
                return cached
        made = compile()
        if not store(path, origin, bytes(made.serialize()), key):
            return made
    # What was just stored, loaded as every other host loads it: the module compile() made
    # keeps its code in anonymous memory, its compile's buffers in malloc's arenas, and a
    # host that compiled its plugins held 1.5 GiB where one started from the cache held
    # 0.4 GiB (issue 63). Dropped and trimmed, a cold host ends within 1.2x of a warm one.
    cached = load(path, origin, engine, kind, key)
    if cached is None:
        return made
    del made
    trim()
    return cached


_libc: object | None = None


def trim() -> None:
    """Give the memory malloc holds free back to the system (glibc's ``malloc_trim``; a
    no-op elsewhere): a Cranelift compile frees hundreds of MB into arenas that glibc
    otherwise keeps."""
    global _libc
    if _libc is None:
        try:
            import ctypes
            _libc = ctypes.CDLL(None)
            getattr(_libc, "malloc_trim")  # noqa: B009 (AttributeError off glibc)
        except (OSError, AttributeError):
            _libc = False
    if _libc:
        _libc.malloc_trim(0)  # type: ignore[attr-defined]


#: How long a compile waits for another one of the same entry: a Ruby interpreter takes
#: 15-60 s on a loaded machine. Past it, this one compiles too (a stopped or stuck compiler
#: elsewhere must not stop this host's start; two compiles only cost CPU).
COMPILE_WAIT_S = 120.0


@contextlib.contextmanager
def _compiling(path: Path) -> Iterator[bool]:
    """Held while the entry at ``path`` is compiled: an exclusive flock on a lock file beside
    it, so hosts sharing a cache directory (a compose volume, the test suite's workers) and
    threads of one host compile each entry once, not once each. Yields whether it waited for
    another. The lock file is removed once the entry is stored; a process that opened it just
    before may then lock a removed file while a third makes a new one, and both compile:
    that race costs CPU only, since every entry is written whole by rename. A directory that
    takes no lock (read-only, or a file system without flock) is compiled into unlocked.
    """
    lock = path.with_name(f".{path.name}.lock")
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    except OSError:
        yield False
        return
    waited, held = False, False
    try:
        deadline, pause = time.monotonic() + COMPILE_WAIT_S, 0.005
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
                break
            except BlockingIOError:
                waited = True
                if time.monotonic() >= deadline:
                    _log.warning("another process has compiled %s for %.0f s; compiling it "
                                 "here too", path.name, COMPILE_WAIT_S)
                    break
                time.sleep(pause)
                pause = min(pause * 2, 0.1)
            except OSError:  # ENOLCK: no locks here
                break
        yield waited
    finally:
        if held:  # stored, or failed to compile: either way no one need wait on it
            with contextlib.suppress(OSError):
                os.unlink(lock)
        os.close(fd)  # releases the flock


def load(path: Path, origin: Origin, engine: wasmtime.Engine, kind: Kind[C],
         key: ModuleKey) -> C | None:
    """The entry at ``path`` deserialized by ``kind`` for ``engine`` when ``key``
    authenticates it as compiled from ``origin``; None when absent, or refused (logged once,
    naming it, and counted: the caller compiles and replaces it).

    The one place compiled code is deserialized (tests/sandbox/test_modcache_trust.py fails
    on any other)."""
    why: str | None
    try:
        copy = _Copy(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        why = f"unreadable: {exc.strerror or exc}"
    else:
        with copy:
            try:
                mac = _read(_mac_path(path))
            except FileNotFoundError:
                why = "no MAC beside it"
            except OSError as exc:
                why = f"unreadable: {exc.strerror or exc}"
            else:
                why = _why_refused(key, origin, copy.bytes, mac)
            if why is None:
                try:
                    # The copy the MAC was checked over, not the file: it could change.
                    if copy.fd is not None:
                        return kind.deserialize_file(engine, f"/proc/self/fd/{copy.fd}")
                    return kind.deserialize(engine, bytes(copy.bytes))
                except wasmtime.WasmtimeError as exc:  # another wasmtime, or a bug of its own
                    why = f"wasmtime refused it: {str(exc).splitlines()[0]}"
    _refused(path, why, "recompiling")
    return None


_MEMFD = hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd")
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)
_SEALS = getattr(fcntl, "F_SEAL_SEAL", 0) | getattr(fcntl, "F_SEAL_SHRINK", 0) \
    | getattr(fcntl, "F_SEAL_GROW", 0) | getattr(fcntl, "F_SEAL_WRITE", 0)


class _Copy:
    """An entry's bytes as this process alone holds them, so what wasmtime deserializes is
    what the MAC was checked over, whoever writes the file meanwhile (another host of the
    same user on a shared volume could write it in place). On Linux a memfd filled by the
    kernel (sendfile) and sealed against writes: wasmtime maps it, as it would the file,
    with one copy in all; elsewhere the bytes in memory (wasmtime copies them twice more).
    """

    def __init__(self, path: Path) -> None:
        # A regular file (no FIFO to wait on, no device to read forever), of a bounded size,
        # before a byte of it is copied.
        src, st = _open_regular(path)
        self.fd: int | None = None
        self._map: mmap.mmap | None = None
        try:
            _check_size(st)
            size = st.st_size
            if not _MEMFD:
                with os.fdopen(os.dup(src), "rb") as fh:
                    self.bytes: bytes | mmap.mmap = fh.read(size)
                return
            self.fd = os.memfd_create("omnicore-cwasm", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
            done = 0
            while done < size:
                sent = os.sendfile(self.fd, src, done, size - done)
                if not sent:  # truncated meanwhile: the MAC refuses what was read
                    break
                done += sent
            fcntl.fcntl(self.fd, fcntl.F_ADD_SEALS, _SEALS)
            # Populated: faulting the pages in one by one doubled the MAC's time.
            self._map = mmap.mmap(self.fd, done, flags=mmap.MAP_SHARED | _POPULATE,
                                  prot=mmap.PROT_READ) if done else None
            self.bytes = self._map if self._map is not None else b""
        except BaseException:
            self.close()
            raise
        finally:
            os.close(src)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> _Copy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read(path: Path) -> bytes:
    """A MAC file's bytes: one byte more than a MAC at most (one that long is refused; a
    sparse 64 GiB one was read whole), from a regular file only (a FIFO waited for good)."""
    fd, _ = _open_regular(path)
    try:
        return os.read(fd, _MAC_BYTES + 1)
    finally:
        os.close(fd)


def _refused(entry: Path, why: str, then: str) -> None:
    global _rejected
    with _rejected_lock:
        _rejected += 1
    _log.warning("compiled-module cache entry %s is refused (%s); %s", entry, why, then)


def _mac_path(path: Path) -> Path:
    return path.with_name(path.name + ".mac")


def store(path: Path, origin: Origin, body: bytes, key: ModuleKey) -> bool:
    """Write ``body`` (what wasmtime serialized from ``origin``) as the entry at ``path`` and
    its MAC by ``key`` beside it, each atomically; whether it was written. A failure is
    logged (the cache is an optimisation: the host runs without it)."""
    if len(body) > MAX_ENTRY_BYTES:  # it would be refused unread: the next load compiles
        _log.info("compiled module %s is %d bytes, over MAX_ENTRY_BYTES: not cached", path,
                  len(body))
        return False
    try:
        check_cache_dir(path.parent, create=True)
        # The MAC first: a reader between the two renames (another host starting on the same
        # folder) then finds no entry yet, a plain miss. Entry first, it found an entry with
        # no MAC and reported it refused, counted as a forgery would be. Either order is safe
        # (the MAC covers the bytes); this one raises no false alarm for a new entry.
        _replace(_mac_path(path), _seal(key, origin, body))
        _replace(path, body)
    except (OSError, ConfigError) as exc:
        _log.warning("cannot write compiled-module cache %s: %s", path, exc)
        return False
    return True


def _replace(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
