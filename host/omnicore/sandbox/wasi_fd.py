"""The descriptor model of omnicore's WASI file access (:mod:`omnicore.sandbox.wasi_fs`).

What the file functions stand on: an ``fs`` grant's directories (:class:`Preopen`,
:func:`parse_dirs`), an instance's open descriptors (:class:`FdTable`, at most
:data:`MAX_OPEN`) with their WASI rights, what one runtime's functions share
(:class:`FsState`), the WASI errno numbers, and the sandboxed path resolution (:func:`walk`):
a path is walked one component at a time with ``openat(..., O_NOFOLLOW)`` from the granted
directory; an absolute path, a ``..`` leaving it or a symlink anywhere on the way is refused
(``ENOTCAPABLE``, with a line in the plugin's log saying why), so nothing outside the
directory is ever reached, whatever the host does to the tree meanwhile.
"""

from __future__ import annotations

import errno as host_errno
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from omnicore.errors import ConfigError
from omnicore.sandbox.fastcall import GuestMemory
from omnicore.sandbox.pluginlog import PluginLog
from omnicore.sandbox.wasi_output import OutputSink

__all__ = [
    "ALL_RIGHTS", "DIR_RIGHTS", "EBADF", "EILSEQ", "EINVAL", "EIO", "EISDIR", "EMFILE",
    "ENAMETOOLONG", "ENOTCAPABLE", "ENOTDIR", "ENOTSUP", "EROFS", "ESPIPE", "FILE_RIGHTS",
    "MAX_OPEN", "RIGHT_PATH_SET_SIZE", "RIGHT_READ", "RIGHT_WRITE", "SUCCESS", "WRITE_RIGHTS",
    "Fd", "FdTable", "FsState", "Preopen", "entry_of", "parse_dirs", "release", "walk",
    "wasi_errno",
]

#: Descriptors one instance may hold open (preopens included).
MAX_OPEN = 64
# WASI errno numbers, and the host's mapped to them
SUCCESS, EBADF, EINVAL, EISDIR, EMFILE, ENOTDIR, ENOTSUP = 0, 8, 28, 31, 33, 54, 58
EIO, EROFS, ESPIPE, ENOTCAPABLE, ENAMETOOLONG, EILSEQ = 29, 69, 70, 76, 37, 25
_ERRNO = {host_errno.EACCES: 2, host_errno.EAGAIN: 6, host_errno.EBADF: 8, host_errno.EBUSY: 10,
          host_errno.EEXIST: 20, host_errno.EFBIG: 22, host_errno.EINVAL: 28,
          host_errno.EIO: 29, host_errno.EISDIR: 31, host_errno.ELOOP: ENOTCAPABLE,
          host_errno.EMFILE: 33, host_errno.ENAMETOOLONG: 37, host_errno.ENOENT: 44,
          host_errno.ENOSPC: 51, host_errno.ENOTDIR: 54, host_errno.ENOTEMPTY: 55,
          host_errno.EPERM: 63, host_errno.EROFS: 69, host_errno.EXDEV: 75,
          host_errno.EDQUOT: 19, host_errno.ENXIO: 60}
# WASI rights
RIGHT_READ, RIGHT_WRITE = 1 << 1, 1 << 6
RIGHT_PATH_SET_SIZE = 1 << 19
ALL_RIGHTS = (1 << 29) - 1
# What a descriptor reports holding (fd_fdstat_get), as wasmtime does: a file the byte
# rights (datasync, read, seek, fdstat_set_flags, sync, tell, write, advise, allocate,
# fd_filestat_*, poll), a directory the path rights, readdir and fd_filestat_get/_set_times.
# The enforcement is the grant's (read-only: EROFS) and the host fd's open mode; rights
# only narrow (fd_fdstat_set_rights), and path_open's truncation asks for its one.
FILE_RIGHTS = ((1 << 9) - 1) | (0b111 << 21) | (1 << 27)  # bits 0-8, 21-23, 27
WRITE_RIGHTS = (1 << 6) | (1 << 8) | (1 << 22)  # write, allocate, fd_filestat_set_size
DIR_RIGHTS = (((1 << 12) - 1) << 9) | (1 << 21) | (1 << 23) | (0b111 << 24)  # 9-21, 23-26


@dataclass(frozen=True, slots=True)
class Preopen:
    """One granted directory: ``host`` (checked, absolute) seen by the guest as ``guest``."""

    host: Path
    guest: str
    writable: bool


def parse_dirs(dirs: Any, key: str, base: Path | None = None) -> tuple[Preopen, ...]:
    """The ``dirs`` option of an ``fs`` grant: ``[{path, guest, write?}]`` (read-only unless
    ``write`` is true). ConfigError names ``key`` for a path that is missing, not a
    directory, a symlink, or a guest path with ``..``."""
    if not isinstance(dirs, Sequence) or isinstance(dirs, str):
        raise ConfigError(f"{key} must be a list of {{path, guest, write}} tables", key=key)
    out: list[Preopen] = []
    for d in dirs:
        if not isinstance(d, Mapping) or set(d) - {"path", "guest", "write"} or not all(
                isinstance(d.get(k), str) and d.get(k) for k in ("path", "guest")) or \
                not isinstance(d.get("write", False), bool):
            raise ConfigError(f"{key}: each entry is {{path = \"HOST DIR\", guest = \"/GUEST\", "
                              f"write = false}}, got {d!r}", key=key, value=d)
        host = Path(d["path"]).expanduser()
        if not host.is_absolute():
            host = (base or Path.cwd()) / host
        if host.is_symlink():
            raise ConfigError(f"{key}: {host} is a symlink; grant the directory itself "
                              "(omnicore refuses symlinks in granted paths)", key=key)
        if not host.exists():
            raise ConfigError(f"{key}: {host} does not exist", key=key)
        if not host.is_dir():
            raise ConfigError(f"{key}: {host} is not a directory", key=key)
        guest = d["guest"]
        if ".." in PurePosixPath(guest).parts:
            raise ConfigError(f"{key}: guest path {guest!r} has a '..' component", key=key)
        out.append(Preopen(host.absolute(), guest.rstrip("/") or "/", d.get("write", False)))
    return tuple(out)


class Fd:
    """One open descriptor: its host fd, whether a directory, its grant's writability, its
    WASI rights and fdflags (``preopen`` for a granted directory itself)."""

    __slots__ = ("dir", "flags", "host", "inheriting", "name", "preopen", "rights",
                 "writable")

    def __init__(self, host: int, is_dir: bool, writable: bool, name: str,
                 preopen: Preopen | None = None, rights: int = ALL_RIGHTS,
                 inheriting: int = ALL_RIGHTS, flags: int = 0) -> None:
        self.host, self.dir, self.writable, self.name = host, is_dir, writable, name
        self.preopen = preopen
        self.rights, self.inheriting, self.flags = rights, inheriting, flags


class FdTable:
    """The open descriptors of one instance: its preopens from 3, then what it opens."""

    def __init__(self, preopens: Sequence[Preopen]) -> None:
        self.fds: dict[int, Fd] = {}
        try:
            for i, p in enumerate(preopens):
                fd = os.open(p.host, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
                self.fds[3 + i] = Fd(fd, True, p.writable, p.guest, p, DIR_RIGHTS)
        except OSError:
            self.close()
            raise

    def add(self, entry: Fd) -> int:
        if len(self.fds) >= MAX_OPEN:
            os.close(entry.host)
            return -1
        fd = 3
        while fd in self.fds:
            fd += 1
        self.fds[fd] = entry
        return fd

    def close(self) -> None:
        """Close every descriptor (the instance is being dropped)."""
        for entry in self.fds.values():
            try:
                os.close(entry.host)
            except OSError:
                pass
        self.fds.clear()


@dataclass
class FsState:
    """What the file functions of one runtime share: its grant, log and WASI output."""

    preopens: tuple[Preopen, ...]
    log: PluginLog
    output: OutputSink | None
    #: The instance's FdTable, from the memory a host function is given.
    table_of: Callable[[GuestMemory], FdTable]

    def refuse(self, why: str) -> int:
        self.log.write(3, f"fs: refused: {why} (omnicore refuses absolute paths, paths "
                          "leaving the granted directory, and symlinks)")
        return ENOTCAPABLE


def wasi_errno(exc: OSError) -> int:
    """The WASI errno for a host OSError (EIO for one WASI has no number for)."""
    return _ERRNO.get(exc.errno or 0, EIO)


def entry_of(st: FsState, mem: GuestMemory, fd: int) -> Fd | int:
    """Descriptor ``fd`` of the calling instance, or EBADF."""
    entry = st.table_of(mem).fds.get(fd)
    return EBADF if entry is None else entry


def walk(st: FsState, mem: GuestMemory, fd: int, ptr: int, length: int
         ) -> tuple[Fd, int, str] | int:
    """(directory entry, host dir fd holding the last component, its name) for the path at
    ``ptr``: every component but the last opened with O_NOFOLLOW. The caller closes the
    returned fd when it is not ``entry.host``."""
    base = entry_of(st, mem, fd)
    if isinstance(base, int):
        return base
    if not base.dir:
        return ENOTDIR
    path = mem.read(ptr, length, "path").decode("utf-8", "replace")
    if "\0" in path:
        return EILSEQ  # no host path holds a NUL
    if path.startswith("/"):
        return st.refuse(f"absolute path {path!r}")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        parts = ["."]
    # The directories opened on the way, each with O_NOFOLLOW: '..' goes back to the one
    # before (exactly, since no step was a symlink), and past the first it is refused.
    stack = [base.host]
    try:
        for part in parts[:-1]:
            if part == "..":
                if len(stack) == 1:
                    return st.refuse(f"path {path!r} leaves the granted directory")
                os.close(stack.pop())
                continue
            try:
                nxt = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW,
                              dir_fd=stack[-1])
            except OSError as exc:
                if exc.errno in (host_errno.ELOOP, host_errno.ENOTDIR) and os.path.islink(
                        f"/proc/self/fd/{stack[-1]}/{part}"):
                    return st.refuse(f"path {path!r} goes through a symlink ({part})")
                return wasi_errno(exc)
            stack.append(nxt)
        last = parts[-1]
        if last == "..":
            if len(stack) == 1:
                return st.refuse(f"path {path!r} leaves the granted directory")
            os.close(stack.pop())
            last = "."
        cur = stack.pop()
        return base, cur, last
    finally:
        for fd in stack[1:]:
            os.close(fd)


def release(base: Fd, cur: int) -> None:
    """Close the directory fd :func:`walk` opened (unless it is ``base``'s own)."""
    if cur != base.host:
        os.close(cur)
