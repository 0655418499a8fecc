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
import hashlib
import hmac
import logging
import os
import stat
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, TypeVar

import wasmtime

from omnicore.errors import ConfigError

__all__ = ["MAGIC", "check_cache_dir", "compiled", "load", "store"]

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
    mode = stat.S_IMODE(st.st_mode)
    why = (None if not stat.S_ISDIR(st.st_mode) else  # not a cache at all: nothing is read
           f"is owned by uid {st.st_uid}, not this user ({os.geteuid()})"
           if st.st_uid != os.geteuid() else
           f"is writable by other users (mode {mode:04o})" if mode & 0o022 else None)
    if why is not None:
        raise ConfigError(f"the module cache {path} {why}: whoever can write it can run code "
                          f"in this host; `chmod 700 {path}` it, or set sandbox.cache_dir to "
                          "a directory of your own", key="sandbox.cache_dir", value=str(path))
    return path


def compiled(path: Path | None, wasm_sha256: str, deserialize: Callable[[str], C],
             compile: Callable[[], C]) -> C:
    """The entry at ``path`` (see :func:`load`), or else ``compile()``, stored there for the
    next time; with no ``path`` (no cache), just ``compile()``."""
    if path is not None:
        cached = load(deserialize, path, wasm_sha256)
        if cached is not None:
            return cached
    made = compile()
    if path is not None:
        store(path, wasm_sha256, bytes(made.serialize()))
    return made


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
    if len(sums) != _SUM_BYTES or not sums.startswith(MAGIC):
        return "its checksum file is not one of this omnicore"
    key, digest = sums[len(MAGIC):len(MAGIC) + 32], sums[len(MAGIC) + 32:]
    if not hmac.compare_digest(key, bytes.fromhex(wasm_sha256)):
        return "compiled from another module"
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
