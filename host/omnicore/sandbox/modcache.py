"""The compiled-module cache on disk: checked entries, in a directory only the host can write.

wasmtime trusts what it deserializes: flipped bytes in a compiled artifact's code crash the
host (SIGSEGV) and in its data make every call trap, on every start, until someone deletes
the file. So beside each entry ``<key>.cwasm`` (wasmtime's own bytes, untouched, so it is
still memory-mapped rather than copied) lies ``<key>.cwasm.sum``::

    MAGIC (8) | sha256 of the wasm it was compiled from (32) | sha256 of the entry (32)

and :func:`load` checks both digests before wasmtime sees a byte, then maps the very file it
hashed (the open descriptor, not the path): a damaged entry, a truncated one, one without its
sum, or one compiled from another module and renamed is logged and treated as absent, so the
caller recompiles and :func:`store` rewrites it. :func:`store` writes each file to a temp
file, fsyncs it and renames it into place, so a reader (another host on the same dir, or this
one after a crash) never sees half of one; an entry whose sum is not (yet) its own is only
recompiled. Hashing costs about as much as reading the file (tens of ms for a Go plugin), so
a file already checked by this process, unchanged since (same inode, size, mtime and ctime),
is not hashed again.

A checksum stops damage, not an attacker who can write the directory (they would write a
valid checksum too), so :func:`check_cache_dir` refuses a cache directory that anyone but
the host's user can write, and creates it 0700.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol, TypeVar

import wasmtime

from omnicore.errors import ConfigError

__all__ = ["MAGIC", "adopt", "check_cache_dir", "compiled", "load", "store"]

MAGIC = b"omniCW1\n"
_SUM_BYTES = len(MAGIC) + 64
_PROC_FD = os.path.isdir("/proc/self/fd")

_log = logging.getLogger("omnicore.sandbox")
T = TypeVar("T")


class _Compiled(Protocol):
    def serialize(self) -> bytes | bytearray: ...


C = TypeVar("C", bound=_Compiled)


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
    return path


def _untrusted(st: os.stat_result, owners: tuple[int, ...]) -> str | None:
    """Why a file or directory with this stat may hold what someone else wrote, or None."""
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid not in owners:
        return f"is owned by uid {st.st_uid}, not this user ({os.geteuid()})"
    return f"is writable by other users (mode {mode:04o})" if mode & 0o022 else None


def adopt(source: Path, path: Path, wasm_sha256: str) -> bool:
    """Take the entry named like ``path`` in the directory ``source`` (another module cache:
    a build machine's, a CI's) as the entry at ``path``, when it was compiled from the wasm
    with this digest and matches its checksum; whether it was taken. The bytes checked are
    the bytes stored, with a sum made here; wasmtime still refuses, when the entry is loaded,
    one made by another engine configuration (it is then recompiled, as any unusable entry).

    Whoever can write ``source`` can run code in the host that adopts from it, so the
    directory and both files must belong to this user or root and be writable by no one else
    (ConfigError otherwise, naming the directory).
    """
    owners = (os.geteuid(), 0)
    why = _untrusted(source.stat(), owners)
    entry = source / path.name
    body = sums = None
    if why is None:
        try:
            body, why = _read_owned(entry, owners)
            if body is not None:
                sums, why = _read_owned(_sum_path(entry), owners)
        except FileNotFoundError:
            return False
        except OSError as exc:  # ELOOP: a symbolic link, which could point anywhere
            why = f"{entry.name}: {exc.strerror or exc}"
    if why is not None:
        raise ConfigError(f"cannot take compiled modules from {source}: {why}: whoever can "
                          "write it can run code in this host")
    assert body is not None and sums is not None
    digest, why = _summed(sums, wasm_sha256)
    if why is None and not hmac.compare_digest(digest, hashlib.sha256(body).digest()):
        why = "checksum mismatch: the file is damaged"
    if why is not None:
        _log.warning("compiled-module entry %s is not taken (%s); compiling instead", entry, why)
        return False
    store(path, wasm_sha256, body)
    return True


def _read_owned(path: Path, owners: tuple[int, ...]) -> tuple[bytes | None, str | None]:
    """The bytes of the regular file ``path`` (not followed when a link), or why it is not
    trusted (its stat as opened, so what is checked is what is read)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, f"{path.name} is not a regular file"
        why = _untrusted(st, owners)
        return (fh.read(), None) if why is None else (None, f"{path.name} {why}")


def compiled(path: Path | None, wasm_sha256: str, deserialize: Callable[[str], C],
             compile: Callable[[], C]) -> C:
    """The entry at ``path`` (see :func:`load`), or else ``compile()``, stored there for the
    next time; with no ``path`` (no cache), just ``compile()``. One process or thread at a
    time compiles a given entry (:func:`_compiling`): the others wait, then load it."""
    if path is None:
        return compile()
    cached = load(deserialize, path, wasm_sha256)
    if cached is not None:
        return cached
    with _compiling(path) as waited:
        if waited:  # someone else compiled it meanwhile (or gave up: then this one does)
            cached = load(deserialize, path, wasm_sha256)
            if cached is not None:
                return cached
        made = compile()
        store(path, wasm_sha256, bytes(made.serialize()))
        return made


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


def load(deserialize: Callable[[str], T], path: Path, wasm_sha256: str) -> T | None:
    """What ``deserialize(file)`` makes of the entry at ``path`` for the wasm with that
    digest (``wasmtime.Module.deserialize_file`` bound to an engine, or a component's), or
    None (absent, or damaged: logged, and the caller recompiles)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        _log.warning("compiled-module cache entry %s is unreadable (%s); recompiling", path, exc)
        return None
    try:
        try:
            why = _damage(fd, path, wasm_sha256)
        except OSError as exc:
            why = f"unreadable: {exc}"
        if why is None:
            try:
                # The descriptor, not the path: wasmtime maps exactly the bytes just checked.
                source = f"/proc/self/fd/{fd}" if _PROC_FD else str(path)
                return deserialize(source)
            except wasmtime.WasmtimeError as exc:  # another engine config or wasmtime version
                why = f"wasmtime refused it: {str(exc).splitlines()[0]}"
    finally:
        os.close(fd)
    _log.warning("compiled-module cache entry %s is unusable (%s); recompiling", path, why)
    return None


#: Entries this process has checked: path -> (device, inode, size, mtime, ctime) then.
_checked: dict[str, tuple[int, int, int, int, int]] = {}
_checked_lock = threading.Lock()


def _identity(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _damage(fd: int, path: Path, wasm_sha256: str) -> str | None:
    seen = _identity(os.fstat(fd))
    try:
        sums = _sum_path(path).read_bytes()
    except FileNotFoundError:
        return "no checksum beside it"
    digest, why = _summed(sums, wasm_sha256)
    if why is not None:
        return why
    with _checked_lock:
        if _checked.get(str(path)) == seen:
            return None
    h = hashlib.sha256()
    with os.fdopen(os.dup(fd), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    if not hmac.compare_digest(digest, h.digest()):
        return "checksum mismatch: the file is damaged"
    with _checked_lock:
        _checked[str(path)] = seen
    return None


def _summed(sums: bytes, wasm_sha256: str) -> tuple[bytes, str | None]:
    """The entry digest a sum file holds, or why it is no sum of an entry of this wasm."""
    if len(sums) != _SUM_BYTES or not sums.startswith(MAGIC):
        return b"", "its checksum file is not one of this omnicore"
    key, digest = sums[len(MAGIC):len(MAGIC) + 32], sums[len(MAGIC) + 32:]
    if not hmac.compare_digest(key, bytes.fromhex(wasm_sha256)):
        return b"", "compiled from another module"
    return digest, None


def _sum_path(path: Path) -> Path:
    return path.with_name(path.name + ".sum")


def store(path: Path, wasm_sha256: str, body: bytes) -> None:
    """Write ``body`` (what wasmtime serialized) as the entry at ``path`` and its sum beside
    it, each atomically; a failure is logged (the cache is an optimisation: the host runs
    without it)."""
    sums = MAGIC + bytes.fromhex(wasm_sha256) + hashlib.sha256(body).digest()
    try:
        check_cache_dir(path.parent, create=True)
        _replace(path, body)
        _replace(_sum_path(path), sums)
    except (OSError, ConfigError) as exc:
        _log.warning("cannot write compiled-module cache %s: %s", path, exc)


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
