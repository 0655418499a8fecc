"""WASI preview 1 file functions over the directories of an ``fs`` grant (specs/extism.md).

wasmtime's own WASI would follow symlinks that stay inside a preopened directory and run its
reads and writes outside the call's deadline; omnicore serves the file functions itself
(:data:`FS_FUNCTIONS`, defined by :func:`define_wasi_fs`), as raw host functions over the
descriptor model of :mod:`omnicore.sandbox.wasi_fd`, so that:

* every path goes through ``wasi_fd.walk`` (one component at a time, ``O_NOFOLLOW``, no
  absolute path, no ``..`` out, no symlink: ``ENOTCAPABLE``); only regular files and
  directories open (a FIFO or device would block or never end);
* a directory granted read-only refuses every write, create, truncate, rename and delete
  (``EROFS``);
* reads and writes go in 1 MiB pieces and stop at the call's deadline; an instance holds at
  most ``wasi_fd.MAX_OPEN`` descriptors, closed when it is dropped.

Only instances of plugins with an ``fs`` grant get these functions; for the others wasmtime's
WASI (no preopens) answers. fds 0-2 are stdin (empty), stdout and stderr (the log).
"""

from __future__ import annotations

import errno as host_errno
import fcntl
import os
import stat
import struct
import time
from collections.abc import Callable
from typing import Any

import wasmtime

from omnicore.sandbox.fastcall import GuestMemory, RawInstance
from omnicore.sandbox.hostfunc import define_host_function
from omnicore.sandbox.wasi import WASI_MODULE, on_memory
from omnicore.sandbox.wasi import fd_write as stdio_write
from omnicore.sandbox.wasi_fd import (
    ALL_RIGHTS,
    DIR_RIGHTS,
    EBADF,
    EINVAL,
    EISDIR,
    EMFILE,
    ENAMETOOLONG,
    ENOTCAPABLE,
    ENOTDIR,
    ENOTSUP,
    EROFS,
    ESPIPE,
    FILE_RIGHTS,
    RIGHT_PATH_SET_SIZE,
    RIGHT_READ,
    RIGHT_WRITE,
    SUCCESS,
    WRITE_RIGHTS,
    Fd,
    FsState,
    entry_of,
    release,
    walk,
    wasi_errno,
)
from omnicore.sandbox.wasi_output import STDERR, STDOUT

__all__ = ["FS_FUNCTIONS", "define_wasi_fs"]

_CHUNK = 1 << 20
# WASI filetypes, oflags, fdflags, fstflags
_CHAR, _DIR, _FILE, _LINK = 2, 3, 4, 7
_O_CREAT, _O_DIRECTORY, _O_EXCL, _O_TRUNC = 1, 2, 4, 8
_FD_APPEND, _FD_DSYNC, _FD_NONBLOCK, _FD_RSYNC, _FD_SYNC = 1, 2, 4, 8, 16
_FST_ATIM, _FST_ATIM_NOW, _FST_MTIM, _FST_MTIM_NOW = 1, 2, 4, 8
_IOVEC = struct.Struct("<II")
_FILESTAT = struct.Struct("<QQB7xQQQQQ")  # dev ino type nlink size atim mtim ctim: 64 bytes
_FDSTAT = struct.Struct("<BxH4xQQ")  # filetype flags rights_base rights_inheriting: 24 bytes
_DIRENT = struct.Struct("<QQIB3x")  # next ino namlen type: 24 bytes, then the name


def path_open(st: FsState, mem: GuestMemory, fd: int, _dirflags: int, ptr: int, length: int,
              oflags: int, rights: int, inheriting: int, fdflags: int, out: int) -> int:
    mem.check(out, 4, "path_open fd")
    walked = walk(st, mem, fd, ptr, length)
    if isinstance(walked, int):
        return walked
    base, cur, name = walked
    try:
        # A directory opens for reading: asked for the write right, it is EISDIR (as
        # wasmtime answers); the path rights it asks for are what its files inherit.
        directory = bool(oflags & _O_DIRECTORY)
        if directory and rights & RIGHT_WRITE:
            return EISDIR
        write = bool(rights & RIGHT_WRITE) or bool(oflags & (_O_CREAT | _O_TRUNC))
        if write and not base.writable:
            return EROFS
        if oflags & _O_TRUNC and not base.rights & RIGHT_PATH_SET_SIZE:
            return ENOTCAPABLE
        # O_NONBLOCK: opening a FIFO would otherwise wait for a peer, outside any deadline.
        flags = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        flags |= os.O_RDWR if write and rights & RIGHT_READ else os.O_WRONLY if write \
            else os.O_RDONLY
        flags |= (os.O_CREAT if oflags & _O_CREAT else 0) | (
            os.O_EXCL if oflags & _O_EXCL else 0) | (os.O_TRUNC if oflags & _O_TRUNC else 0) | (
            os.O_DIRECTORY if oflags & _O_DIRECTORY else 0) | (
            os.O_APPEND if fdflags & _FD_APPEND else 0) | (
            os.O_SYNC if fdflags & (_FD_SYNC | _FD_RSYNC) else 0) | (
            os.O_DSYNC if fdflags & _FD_DSYNC else 0)
        try:
            host = os.open(name, flags, 0o644, dir_fd=cur)
        except OSError as exc:
            if exc.errno == host_errno.ELOOP or (
                    exc.errno == host_errno.ENOTDIR and os.path.islink(
                        f"/proc/self/fd/{cur}/{name}")):
                return st.refuse(f"{name!r} is a symlink")
            return wasi_errno(exc)
        mode = os.fstat(host).st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            os.close(host)
            return st.refuse(f"{name!r} is not a regular file or a directory")
        is_dir = stat.S_ISDIR(mode)
        if not is_dir and mem.read(ptr, length, "path").endswith(b"/"):
            os.close(host)
            return ENOTDIR  # "file/" names a directory
        granted = rights & base.inheriting
        if is_dir:
            entry = Fd(host, True, base.writable, name, None, granted & DIR_RIGHTS,
                        inheriting & base.inheriting)
        else:
            if not base.writable:
                granted &= ~WRITE_RIGHTS
            entry = Fd(host, False, base.writable, name, None, granted & FILE_RIGHTS, 0,
                        fdflags & (_FD_APPEND | _FD_DSYNC | _FD_NONBLOCK | _FD_RSYNC
                                   | _FD_SYNC))
        new = st.table_of(mem).add(entry)
        if new < 0:
            return EMFILE
        mem.write(out, new.to_bytes(4, "little"), "path_open fd")
        return SUCCESS
    finally:
        release(base, cur)


def _iovecs(mem: GuestMemory, iovs: int, n: int) -> list[tuple[int, int]]:
    mem.check(iovs, n * _IOVEC.size, "iovec array")
    out = [_IOVEC.unpack_from(mem.view, iovs + i * _IOVEC.size) for i in range(n)]
    for ptr, length in out:
        mem.check(ptr, length, "iovec buffer")
    return out


def _transfer(mem: GuestMemory, host: int, iovs: int, n: int, offset: int | None,
              write: bool) -> int:
    """Read into / write from the iovecs, 1 MiB at a time, until done, EOF or the
    deadline; the byte count."""
    total = 0
    deadline = mem.deadline
    for ptr, length in _iovecs(mem, iovs, n):
        off = 0
        while off < length:
            piece = mem.view[ptr + off:ptr + off + min(_CHUNK, length - off)]
            at = None if offset is None else offset + total
            if write:
                got = os.write(host, piece) if at is None else os.pwrite(host, piece, at)
            else:
                got = os.readv(host, [piece]) if at is None else os.preadv(host, [piece], at)
            off += got
            total += got
            if got < len(piece) or time.monotonic() > deadline:
                return total
    return total


def _rw(write: bool, positioned: bool) -> Callable[..., int]:
    def rw(st: FsState, mem: GuestMemory, fd: int, iovs: int, n: int, *rest: int) -> int:
        offset, result = (rest[0], rest[1]) if positioned else (None, rest[0])
        if fd in (STDOUT, STDERR) and write and not positioned and st.output is not None:
            return stdio_write(st.output, mem, fd, iovs, n, result)
        if fd < 3:
            if positioned:
                return ESPIPE
            if fd == 0 and not write:
                _put(mem, result, 0, 4)  # stdin is empty
                return SUCCESS
            return EBADF
        entry = entry_of(st, mem, fd)
        if isinstance(entry, int):
            return entry
        if entry.dir:
            return EISDIR
        if write and not entry.writable:
            return EROFS
        if not entry.rights & (RIGHT_WRITE if write else RIGHT_READ):
            return ENOTCAPABLE  # dropped with fd_fdstat_set_rights, or never asked for
        mem.check(result, 4, "byte count")
        try:
            count = _transfer(mem, entry.host, iovs, n, offset, write)
        except OSError as exc:
            return wasi_errno(exc)
        _put(mem, result, count, 4)
        return SUCCESS

    return rw


def _put(mem: GuestMemory, ptr: int, value: int, size: int) -> bool:
    mem.write(ptr, value.to_bytes(size, "little"), "result")
    return True


def fd_seek(st: FsState, mem: GuestMemory, fd: int, offset: int, whence: int, out: int) -> int:
    entry = entry_of(st, mem, fd) if fd >= 3 else ESPIPE
    if isinstance(entry, int):
        return entry
    if entry.dir:
        return EBADF  # a directory has no offset (Linux's lseek answers 0)
    if whence not in (0, 1, 2):
        return EINVAL
    try:
        pos = os.lseek(entry.host, offset, whence)
    except OSError as exc:
        return wasi_errno(exc)
    _put(mem, out, pos, 8)
    return SUCCESS


def fd_tell(st: FsState, mem: GuestMemory, fd: int, out: int) -> int:
    return fd_seek(st, mem, fd, 0, 1, out)


def fd_close(st: FsState, mem: GuestMemory, fd: int) -> int:
    if fd < 3:
        return SUCCESS
    entry = st.table_of(mem).fds.pop(fd, None)
    if entry is None:
        return EBADF
    os.close(entry.host)
    return SUCCESS


def fd_prestat_get(st: FsState, mem: GuestMemory, fd: int, out: int) -> int:
    entry = st.table_of(mem).fds.get(fd)
    if entry is None or entry.preopen is None:
        return EBADF
    mem.write(out, struct.pack("<B3xI", 0, len(entry.preopen.guest.encode())), "prestat")
    return SUCCESS


def fd_prestat_dir_name(st: FsState, mem: GuestMemory, fd: int, ptr: int, length: int) -> int:
    entry = st.table_of(mem).fds.get(fd)
    if entry is None or entry.preopen is None:
        return EBADF
    name = entry.preopen.guest.encode()
    if length < len(name):
        return ENAMETOOLONG
    mem.write(ptr, name, "prestat dir name")
    return SUCCESS


def _filetype(mode: int) -> int:
    return _DIR if stat.S_ISDIR(mode) else _FILE if stat.S_ISREG(mode) else \
        _LINK if stat.S_ISLNK(mode) else _CHAR if stat.S_ISCHR(mode) else 0


def _filestat(mem: GuestMemory, out: int, s: os.stat_result | None) -> int:
    if s is None:  # stdio
        mem.write(out, _FILESTAT.pack(0, 0, _CHAR, 1, 0, 0, 0, 0), "filestat")
    else:
        mem.write(out, _FILESTAT.pack(s.st_dev, s.st_ino, _filetype(s.st_mode), s.st_nlink,
                                      s.st_size, s.st_atime_ns, s.st_mtime_ns, s.st_ctime_ns),
                  "filestat")
    return SUCCESS


def fd_filestat_get(st: FsState, mem: GuestMemory, fd: int, out: int) -> int:
    if fd < 3:
        return _filestat(mem, out, None)
    entry = entry_of(st, mem, fd)
    if isinstance(entry, int):
        return entry
    return _filestat(mem, out, os.fstat(entry.host))


def path_filestat_get(st: FsState, mem: GuestMemory, fd: int, _flags: int, ptr: int,
                      length: int, out: int) -> int:
    walked = walk(st, mem, fd, ptr, length)
    if isinstance(walked, int):
        return walked
    base, cur, name = walked
    try:
        return _filestat(mem, out, os.stat(name, dir_fd=cur, follow_symlinks=False))
    except OSError as exc:
        return wasi_errno(exc)
    finally:
        release(base, cur)


def fd_fdstat_get(st: FsState, mem: GuestMemory, fd: int, out: int) -> int:
    if fd < 3:
        mem.write(out, _FDSTAT.pack(_CHAR, 0, ALL_RIGHTS, ALL_RIGHTS), "fdstat")
        return SUCCESS
    entry = entry_of(st, mem, fd)
    if isinstance(entry, int):
        return entry
    kind = _DIR if entry.dir else _FILE
    mem.write(out, _FDSTAT.pack(kind, entry.flags, entry.rights, entry.inheriting), "fdstat")
    return SUCCESS


def fd_fdstat_set_rights(st: FsState, mem: GuestMemory, fd: int, rights: int,
                         inheriting: int) -> int:
    """Rights only narrow (asking for one the descriptor lacks: ENOTCAPABLE)."""
    if fd < 3:
        return SUCCESS if fd in (0, 1, 2) else EBADF
    entry = entry_of(st, mem, fd)
    if isinstance(entry, int):
        return entry
    if rights & ~entry.rights or inheriting & ~entry.inheriting:
        return ENOTCAPABLE
    entry.rights, entry.inheriting = rights, inheriting
    return SUCCESS


def fd_fdstat_set_flags(st: FsState, mem: GuestMemory, fd: int, flags: int) -> int:
    """APPEND and NONBLOCK change on the host fd; the sync flags are kept as asked."""
    entry = entry_of(st, mem, fd) if fd >= 3 else EBADF
    if isinstance(entry, int):
        return entry
    if entry.dir or flags & ~(_FD_APPEND | _FD_DSYNC | _FD_NONBLOCK | _FD_RSYNC | _FD_SYNC):
        return EINVAL if not entry.dir else EBADF
    if flags & _FD_APPEND and not entry.writable:
        return EROFS
    host = fcntl.fcntl(entry.host, fcntl.F_GETFL) & ~(os.O_APPEND | os.O_NONBLOCK)
    host |= (os.O_APPEND if flags & _FD_APPEND else 0) | (
        os.O_NONBLOCK if flags & _FD_NONBLOCK else 0)
    fcntl.fcntl(entry.host, fcntl.F_SETFL, host)
    entry.flags = flags
    return SUCCESS


def fd_renumber(st: FsState, mem: GuestMemory, fd: int, to: int) -> int:
    """Move descriptor ``fd`` to number ``to``, closing what ``to`` held. stdin, stdout and
    stderr are not in the table (they are the host's streams or the log): moving them, or
    over them, is refused (specs/security.md)."""
    table = st.table_of(mem)
    if fd < 3 or to < 3:
        st.refuse("renumbering stdin, stdout or stderr")
        return ENOTSUP
    entry, other = table.fds.get(fd), table.fds.get(to)
    if entry is None or other is None:
        return EBADF
    if fd != to:
        os.close(other.host)
        table.fds[to] = table.fds.pop(fd)
    return SUCCESS


def fd_readdir(st: FsState, mem: GuestMemory, fd: int, buf: int, length: int, cookie: int,
               used: int) -> int:
    entry = entry_of(st, mem, fd) if fd >= 3 else ENOTDIR
    if isinstance(entry, int):
        return entry
    if not entry.dir:
        return ENOTDIR
    mem.check(buf, length, "readdir buffer")
    with os.scandir(entry.host) as it:
        names = sorted((e.name, e.inode(), e.is_symlink(), e.is_dir(follow_symlinks=False))
                       for e in it)
    # "." and ".." first, as a directory lists them (".." with no inode: it may lie outside
    # the granted directory).
    names[:0] = [(".", os.fstat(entry.host).st_ino, False, True), ("..", 0, False, True)]
    out = bytearray()
    for i, (name, ino, link, is_dir) in enumerate(names[cookie:], start=cookie + 1):
        raw = name.encode("utf-8", "surrogateescape")
        out += _DIRENT.pack(i, ino, len(raw), _LINK if link else _DIR if is_dir else _FILE)
        out += raw
        if len(out) >= length:
            break
    data = bytes(out[:length])
    mem.write(buf, data, "readdir buffer")
    _put(mem, used, len(data), 4)
    return SUCCESS


def _path_op(op: Callable[[str, int, str], None]) -> Callable[..., int]:
    def path_op(st: FsState, mem: GuestMemory, fd: int, ptr: int, length: int) -> int:
        walked = walk(st, mem, fd, ptr, length)
        if isinstance(walked, int):
            return walked
        base, cur, name = walked
        try:
            if not base.writable:
                return EROFS
            op(name, cur, mem.read(ptr, length, "path").decode("utf-8", "replace"))
            return SUCCESS
        except OSError as exc:
            return wasi_errno(exc)
        finally:
            release(base, cur)

    return path_op


def path_rename(st: FsState, mem: GuestMemory, fd: int, ptr: int, length: int, new_fd: int,
                new_ptr: int, new_length: int) -> int:
    old = walk(st, mem, fd, ptr, length)
    if isinstance(old, int):
        return old
    try:
        new = walk(st, mem, new_fd, new_ptr, new_length)
        if isinstance(new, int):
            return new
        try:
            if not (old[0].writable and new[0].writable):
                return EROFS
            os.rename(old[2], new[2], src_dir_fd=old[1], dst_dir_fd=new[1])
            return SUCCESS
        except OSError as exc:
            return wasi_errno(exc)
        finally:
            release(new[0], new[1])
    finally:
        release(old[0], old[1])


def fd_filestat_set_size(st: FsState, mem: GuestMemory, fd: int, size: int) -> int:
    entry = entry_of(st, mem, fd) if fd >= 3 else EINVAL
    if isinstance(entry, int):
        return entry
    if not entry.writable or entry.dir:
        return EROFS if not entry.writable else EISDIR
    try:
        os.ftruncate(entry.host, size)
    except OSError as exc:
        return wasi_errno(exc)
    return SUCCESS


def _times(st_now: os.stat_result, atim: int, mtim: int, flags: int) -> tuple[int, int] | int:
    """(atime, mtime) in ns for the fst ``flags``, or EINVAL for a contradictory pair."""
    both = _FST_ATIM | _FST_ATIM_NOW
    if flags & both == both or flags & (_FST_MTIM | _FST_MTIM_NOW) == _FST_MTIM | _FST_MTIM_NOW:
        return EINVAL
    now = time.time_ns()
    a = atim if flags & _FST_ATIM else now if flags & _FST_ATIM_NOW else st_now.st_atime_ns
    m = mtim if flags & _FST_MTIM else now if flags & _FST_MTIM_NOW else st_now.st_mtime_ns
    return a, m


def fd_filestat_set_times(st: FsState, mem: GuestMemory, fd: int, atim: int, mtim: int,
                          flags: int) -> int:
    entry = entry_of(st, mem, fd) if fd >= 3 else EBADF
    if isinstance(entry, int):
        return entry
    times = _times(os.fstat(entry.host), atim, mtim, flags)
    if isinstance(times, int):
        return times
    if not entry.writable:
        return EROFS
    try:
        os.utime(entry.host, ns=times)
    except OSError as exc:
        return wasi_errno(exc)
    return SUCCESS


def path_filestat_set_times(st: FsState, mem: GuestMemory, fd: int, _flags: int, ptr: int,
                            length: int, atim: int, mtim: int, flags: int) -> int:
    walked = walk(st, mem, fd, ptr, length)
    if isinstance(walked, int):
        return walked
    base, cur, name = walked
    try:
        # Never through a symlink: the link's own times, as lutimes.
        times = _times(os.stat(name, dir_fd=cur, follow_symlinks=False), atim, mtim, flags)
        if isinstance(times, int):
            return times
        if not base.writable:
            return EROFS
        os.utime(name, ns=times, dir_fd=cur, follow_symlinks=False)
        return SUCCESS
    except OSError as exc:
        return wasi_errno(exc)
    finally:
        release(base, cur)


def _unlink(name: str, dir_fd: int, path: str) -> None:
    # "file/" names a directory: unlinking a file by it is ENOTDIR, as on Linux.
    if path.endswith("/") and not stat.S_ISDIR(
            os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
        raise NotADirectoryError(host_errno.ENOTDIR, "not a directory")
    os.unlink(name, dir_fd=dir_fd)


def _refused(why: str) -> Callable[..., int]:
    def refused(st: FsState, _mem: GuestMemory, *_args: int) -> int:
        st.refuse(why)
        return ENOTSUP

    return refused


def fd_allocate(st: FsState, mem: GuestMemory, fd: int, _offset: int, _length: int) -> int:
    entry = entry_of(st, mem, fd) if fd >= 3 else EBADF
    if isinstance(entry, int) or entry.dir:
        return EBADF
    st.refuse("fd_allocate (preallocating disk space)")
    return ENOTSUP  # as wasmtime: preview 1's fd_allocate is not carried on


def _ok(_st: FsState, _mem: GuestMemory, *_args: int) -> int:
    return SUCCESS


#: name -> (parameter kinds, implementation); each returns a WASI errno.
FS_FUNCTIONS: dict[str, tuple[tuple[str, ...], Callable[..., int]]] = {
    "path_open": (("i32", "i32", "ptr", "len", "i32", "i64", "i64", "i32", "ptr"), path_open),
    "fd_read": (("i32", "ptr", "len", "ptr"), _rw(False, False)),
    "fd_pread": (("i32", "ptr", "len", "i64", "ptr"), _rw(False, True)),
    "fd_write": (("i32", "ptr", "len", "ptr"), _rw(True, False)),
    "fd_pwrite": (("i32", "ptr", "len", "i64", "ptr"), _rw(True, True)),
    "fd_seek": (("i32", "i64", "i32", "ptr"), fd_seek),
    "fd_tell": (("i32", "ptr"), fd_tell),
    "fd_close": (("i32",), fd_close),
    "fd_prestat_get": (("i32", "ptr"), fd_prestat_get),
    "fd_prestat_dir_name": (("i32", "ptr", "len"), fd_prestat_dir_name),
    "fd_filestat_get": (("i32", "ptr"), fd_filestat_get),
    "path_filestat_get": (("i32", "i32", "ptr", "len", "ptr"), path_filestat_get),
    "fd_fdstat_get": (("i32", "ptr"), fd_fdstat_get),
    "fd_readdir": (("i32", "ptr", "len", "i64", "ptr"), fd_readdir),
    "path_create_directory": (("i32", "ptr", "len"),
                              _path_op(lambda n, d, _p: os.mkdir(n, 0o755, dir_fd=d))),
    "path_remove_directory": (("i32", "ptr", "len"),
                              _path_op(lambda n, d, _p: os.rmdir(n, dir_fd=d))),
    "path_unlink_file": (("i32", "ptr", "len"), _path_op(_unlink)),
    "path_rename": (("i32", "ptr", "len", "i32", "ptr", "len"), path_rename),
    "fd_filestat_set_size": (("i32", "i64"), fd_filestat_set_size),
    "fd_sync": (("i32",), _ok),
    "fd_datasync": (("i32",), _ok),
    "fd_advise": (("i32", "i64", "i64", "i32"), _ok),
    "fd_fdstat_set_flags": (("i32", "i32"), fd_fdstat_set_flags),
    "fd_fdstat_set_rights": (("i32", "i64", "i64"), fd_fdstat_set_rights),
    "fd_allocate": (("i32", "i64", "i64"), fd_allocate),
    "fd_renumber": (("i32", "i32"), fd_renumber),
    "path_symlink": (("ptr", "len", "i32", "ptr", "len"), _refused("creating a symlink")),
    "path_link": (("i32", "i32", "ptr", "len", "i32", "ptr", "len"),
                  _refused("creating a hard link")),
    "path_readlink": (("i32", "ptr", "len", "ptr", "len", "ptr"), _refused("reading a symlink")),
    "fd_filestat_set_times": (("i32", "i64", "i64", "i32"), fd_filestat_set_times),
    "path_filestat_set_times": (("i32", "i32", "ptr", "len", "i64", "i64", "i32"),
                                path_filestat_set_times),
}


def define_wasi_fs(linker: wasmtime.Linker, state: FsState, live: dict[int, RawInstance],
                   keepalive: list[Any], *,
                   memory_of: Callable[[GuestMemory, int], GuestMemory] | None = None) -> None:
    """Define :data:`FS_FUNCTIONS` in ``linker`` over wasmtime's WASI (after
    ``sandbox.wasi.define_wasi``); ``memory_of`` as there."""
    for name, (params, impl) in FS_FUNCTIONS.items():
        if memory_of is not None:
            impl = on_memory(impl, memory_of)
        define_host_function(linker, WASI_MODULE, name, params, ("i32",), impl, state,
                             live, keepalive, pass_caller=memory_of is not None)
