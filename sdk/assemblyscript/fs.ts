// The `fs` grant for AssemblyScript plugins: the operator's directories are WASI preopens
// (specs/abi.md §6), and AssemblyScript has no file API, so this module calls
// `wasi_snapshot_preview1` itself. Paths are the guest paths the grant names ("/data/a.txt");
// each is resolved to the preopen it lies under and opened relative to it, so the host's
// walk (no `..` out of the directory, no symlinks, EROFS in a read-only one) decides.
//
//     import { fs, lastStatus, ok } from "omnicore";
//     const notes = fs.readText("/data/notes.txt");   // null: lastStatus, lastError, fs.lastErrno
//
// A plugin that never calls `fs` imports none of these functions (AssemblyScript compiles what
// is reachable); one that does still runs without the grant: every path is then DENIED.

import { Status, lastError, lastStatus } from "./status";

@external("wasi_snapshot_preview1", "fd_prestat_get") declare function fd_prestat_get(fd: i32, out: usize): i32;
@external("wasi_snapshot_preview1", "fd_prestat_dir_name") declare function fd_prestat_dir_name(fd: i32, p: usize, pl: usize): i32;
@external("wasi_snapshot_preview1", "path_open") declare function path_open(fd: i32, dirflags: i32, p: usize, pl: usize, oflags: i32, base: u64, inheriting: u64, fdflags: i32, out: usize): i32;
@external("wasi_snapshot_preview1", "fd_read") declare function fd_read(fd: i32, iovs: usize, n: usize, out: usize): i32;
@external("wasi_snapshot_preview1", "fd_write") declare function fd_write(fd: i32, iovs: usize, n: usize, out: usize): i32;
@external("wasi_snapshot_preview1", "fd_close") declare function fd_close(fd: i32): i32;
@external("wasi_snapshot_preview1", "fd_readdir") declare function fd_readdir(fd: i32, buf: usize, bl: usize, cookie: u64, out: usize): i32;
@external("wasi_snapshot_preview1", "path_filestat_get") declare function path_filestat_get(fd: i32, flags: i32, p: usize, pl: usize, out: usize): i32;
@external("wasi_snapshot_preview1", "path_unlink_file") declare function path_unlink_file(fd: i32, p: usize, pl: usize): i32;
@external("wasi_snapshot_preview1", "path_remove_directory") declare function path_remove_directory(fd: i32, p: usize, pl: usize): i32;
@external("wasi_snapshot_preview1", "path_create_directory") declare function path_create_directory(fd: i32, p: usize, pl: usize): i32;

// WASI errno values (wasi_snapshot_preview1's `errno`).
const EACCES = 2, EDQUOT = 19, EEXIST = 20, EFBIG = 22, EINVAL = 28, EISDIR = 31,
  ENAMETOOLONG = 37, ENOENT = 44, ENOSPC = 51, ENOTDIR = 54, ENOTEMPTY = 55, EPERM = 63,
  EROFS = 69, ENOTCAPABLE = 76;

// Rights (bits of wasi_snapshot_preview1's `rights`) asked for when opening.
const FD_READ: u64 = 1 << 1, FD_WRITE: u64 = 1 << 6, FD_READDIR: u64 = 1 << 14;
const O_CREAT = 1, O_DIRECTORY = 2, O_TRUNC = 8;
const FILETYPE_DIRECTORY: u8 = 3, FILETYPE_REGULAR = 4;

/** What `readFile`/`readText` accept unless told: the host's file sizes are not trusted. */
export const DEFAULT_MAX_BYTES: usize = 16 << 20;
// Bounds on what the host hands back: a preopen's name, a directory entry's name.
const MAX_NAME: usize = 4096;
// The most a read may ask for, whatever maxBytes says: about what AssemblyScript's heap can hold.
const MAX_READ: usize = 1 << 30;
// Preopens are numbered from fd 3 on; an instance holds at most 64 descriptors (ABI §6).
const MAX_PREOPENS: i32 = 64;

/** A file's or directory's `stat`. */
export class FileStat {
  constructor(public size: u64, public isDir: bool, public isFile: bool,
              /** Last modification, ns since the epoch. */
              public mtimeNs: u64) {}
}

class Preopen {
  constructor(public fd: i32, public name: string) {}
}

let preopens: Preopen[] | null = null;
// 64 bytes of raw heap for the out-parameters (a filestat is the largest), allocated once.
let scratch: usize = 0;

function out(): usize {
  if (scratch == 0) scratch = heap.alloc(64);
  return scratch;
}

function found(): Preopen[] {
  let list = preopens;
  if (list != null) return list;
  list = [];
  const buf = out();
  for (let fd = 3; fd < 3 + MAX_PREOPENS; fd++) {
    if (fd_prestat_get(fd, buf) != 0) break;          // EBADF: no more preopens
    if (load<u8>(buf) != 0) continue;                 // not a directory
    const n = <usize>load<u32>(buf, 4);
    if (n > MAX_NAME) continue;
    const name = heap.alloc(n > 0 ? n : 1);
    if (fd_prestat_dir_name(fd, name, n) == 0) {
      let text = String.UTF8.decodeUnsafe(name, n);
      while (text.length > 1 && text.endsWith("/")) text = text.substring(0, text.length - 1);
      list.push(new Preopen(fd, text));
    }
    heap.free(name);
  }
  preopens = list;
  return list;
}

/** The guest paths of the granted directories, in the grant's order. */
export function dirs(): string[] {
  const list = found(), names: string[] = [];
  for (let i = 0; i < list.length; i++) names.push(list[i].name);
  return names;
}

/** The errno of the last failed `fs` call (0 after one that succeeded). */
export let lastErrno: i32 = 0;

function failed(status: i32, message: string, errno: i32 = 0): bool {
  lastStatus = status;
  lastError = message;
  lastErrno = errno;
  return false;
}

function succeeded(): void {
  lastStatus = 0;
  lastErrno = 0;
}

function statusOf(errno: i32): i32 {
  if (errno == ENOENT) return Status.NOT_FOUND;
  if (errno == ENOTCAPABLE || errno == EACCES || errno == EPERM || errno == EROFS) return Status.DENIED;
  if (errno == EDQUOT || errno == ENOSPC) return Status.QUOTA;
  if (errno == EFBIG) return Status.TOO_LARGE;
  if (errno == EINVAL || errno == EISDIR || errno == ENOTDIR || errno == EEXIST
      || errno == ENOTEMPTY || errno == ENAMETOOLONG) return Status.INVALID;
  return Status.UNAVAILABLE;
}

const STATUS_NAMES = ["NOT_FOUND", "DENIED", "INVALID", "QUOTA", "UNAVAILABLE", "TOO_LARGE"];

function wasiFailed(errno: i32, path: string): bool {
  const status = statusOf(errno);
  return failed(status, STATUS_NAMES[-status - 1] + ": " + path + " (WASI errno " + errno.toString() + ")", errno);
}

// The preopen a guest path lies under (the longest name that is a whole-component prefix)
// and the path relative to it, as UTF-8; null with lastStatus set when none.
let atFd: i32 = -1;
let rel: ArrayBuffer = new ArrayBuffer(0);

function resolve(path: string): bool {
  if (!path.startsWith("/")) return failed(Status.INVALID, "INVALID: fs paths are absolute: " + path);
  const list = found();
  let best = -1, bestLen = -1;
  for (let i = 0; i < list.length; i++) {
    const name = list[i].name;
    const under = name == "/" || path == name || path.startsWith(name + "/");
    if (under && name.length > bestLen) { best = i; bestLen = name.length; }
  }
  if (best < 0) return failed(Status.DENIED, "DENIED: no fs directory is granted for " + path, ENOTCAPABLE);
  let tail = path.substring(bestLen == 1 ? 1 : bestLen);
  while (tail.startsWith("/")) tail = tail.substring(1);
  atFd = list[best].fd;
  rel = String.UTF8.encode(tail.length > 0 ? tail : ".");
  return true;
}

// Opens `path`; the descriptor, or -1 with lastStatus set.
function open(path: string, oflags: i32, rights: u64): i32 {
  if (!resolve(path)) return -1;
  const buf = out();
  const errno = path_open(atFd, 0, changetype<usize>(rel), rel.byteLength, oflags, rights, 0, 0, buf);
  if (errno != 0) { wasiFailed(errno, path); return -1; }
  return load<i32>(buf);
}

/** `path`'s bytes, at most `maxBytes` (TOO_LARGE when longer); null on failure. */
export function readFile(path: string, maxBytes: usize = DEFAULT_MAX_BYTES): Uint8Array | null {
  const fd = open(path, 0, FD_READ);
  if (fd < 0) return null;
  if (maxBytes > MAX_READ) maxBytes = MAX_READ;
  // Read until end of file into a raw block that grows, never past maxBytes + 1: the size a
  // stat reports could be a lie or change while reading.
  let cap: usize = 4096, len: usize = 0;
  let block = heap.alloc(cap);
  const iov = out();
  let errno = 0;
  while (true) {
    if (len == cap) {
      if (cap > maxBytes) break;
      const grown = cap * 2 < maxBytes + 1 ? cap * 2 : maxBytes + 1;
      block = heap.realloc(block, grown);
      cap = grown;
    }
    store<u32>(iov, <u32>(block + len));
    store<u32>(iov, <u32>(cap - len), 4);
    errno = fd_read(fd, iov, 1, iov + 8);
    if (errno != 0) break;
    const n = <usize>load<u32>(iov, 8);
    if (n == 0 || n > cap - len) break;
    len += n;
  }
  fd_close(fd);
  let result: Uint8Array | null = null;
  if (errno != 0) wasiFailed(errno, path);
  else if (len > maxBytes) failed(Status.TOO_LARGE, "TOO_LARGE: " + path + " is over " + maxBytes.toString() + " bytes");
  else {
    result = new Uint8Array(<i32>len);
    memory.copy(result.dataStart, block, len);
    succeeded();
  }
  heap.free(block);
  return result;
}

/** `path` as UTF-8 text (invalid sequences replaced), at most `maxBytes`; null on failure. */
export function readText(path: string, maxBytes: usize = DEFAULT_MAX_BYTES): string | null {
  const data = readFile(path, maxBytes);
  return data != null ? String.UTF8.decodeUnsafe(data.dataStart, data.byteLength) : null;
}

function writeRaw(path: string, ptr: usize, len: usize): bool {
  const fd = open(path, O_CREAT | O_TRUNC, FD_WRITE);
  if (fd < 0) return false;
  const iov = out();
  let done: usize = 0, errno = 0;
  while (done < len) {
    store<u32>(iov, <u32>(ptr + done));
    store<u32>(iov, <u32>(len - done), 4);
    errno = fd_write(fd, iov, 1, iov + 8);
    if (errno != 0) break;
    const n = <usize>load<u32>(iov, 8);
    if (n == 0 || n > len - done) { errno = -1; break; }  // the host stopped (its deadline)
    done += n;
  }
  fd_close(fd);
  if (errno == -1) return failed(Status.UNAVAILABLE, "UNAVAILABLE: " + path + ": short write");
  if (errno != 0) return wasiFailed(errno, path);
  succeeded();
  return true;
}

/** Creates or replaces `path` with `data` (DENIED in a read-only directory). */
export function writeFile(path: string, data: Uint8Array): bool {
  return writeRaw(path, data.dataStart, data.byteLength);
}

/** Creates or replaces `path` with `text` as UTF-8. */
export function writeText(path: string, text: string): bool {
  const data = String.UTF8.encode(text);
  return writeRaw(path, changetype<usize>(data), data.byteLength);
}

/** `path`'s size, kind and modification time, or null (NOT_FOUND when it does not exist). */
export function stat(path: string): FileStat | null {
  if (!resolve(path)) return null;
  const buf = out();
  const errno = path_filestat_get(atFd, 0, changetype<usize>(rel), rel.byteLength, buf);
  if (errno != 0) { wasiFailed(errno, path); return null; }
  succeeded();
  const kind = load<u8>(buf, 16);
  return new FileStat(load<u64>(buf, 32), kind == FILETYPE_DIRECTORY, kind == FILETYPE_REGULAR, load<u64>(buf, 48));
}

/** Whether `path` exists in a granted directory (false too when it may not be looked at). */
export function exists(path: string): bool {
  return stat(path) != null;
}

/** The names in directory `path`, sorted, without "." and ".."; null on failure. */
export function listDir(path: string): string[] | null {
  const fd = open(path, O_DIRECTORY, FD_READDIR);
  if (fd < 0) return null;
  const names: string[] = [];
  let cap: usize = 4096;
  let buf = heap.alloc(cap);
  const used = out();
  let cookie: u64 = 0, errno = 0;
  while (true) {
    errno = fd_readdir(fd, buf, cap, cookie, used);
    if (errno != 0) break;
    let n = <usize>load<u32>(used);
    if (n > cap) n = cap;                  // the host's count, not trusted past the buffer
    let at: usize = 0, whole = 0;
    // dirent: d_next u64, d_ino u64, d_namlen u32, d_type u8, then the name (24 + namlen)
    while (n - at >= 24) {
      const namlen = <usize>load<u32>(buf + at, 16);
      if (namlen > n - at - 24) break;     // cut off by the buffer's end
      const name = String.UTF8.decodeUnsafe(buf + at + 24, namlen);
      if (name != "." && name != "..") names.push(name);
      cookie = load<u64>(buf + at);
      at += 24 + namlen;
      whole++;
    }
    if (n < cap) break;                    // the end of the directory
    if (whole == 0) {                      // one entry larger than the buffer: grow, bounded
      if (cap >= 24 + MAX_NAME) { errno = ENAMETOOLONG; break; }
      cap = 24 + MAX_NAME;
      heap.free(buf);
      buf = heap.alloc(cap);
    }
  }
  heap.free(buf);
  fd_close(fd);
  if (errno != 0) { wasiFailed(errno, path); return null; }
  succeeded();
  names.sort();
  return names;
}

/** Removes file `path`, or directory `path` when it is empty; false on failure. */
export function remove(path: string): bool {
  const info = stat(path);
  if (info == null) return false;
  const errno = info.isDir
    ? path_remove_directory(atFd, changetype<usize>(rel), rel.byteLength)
    : path_unlink_file(atFd, changetype<usize>(rel), rel.byteLength);
  if (errno != 0) return wasiFailed(errno, path);
  succeeded();
  return true;
}

/** Creates directory `path` (its parent must exist); false on failure (INVALID if it exists). */
export function mkdir(path: string): bool {
  if (!resolve(path)) return false;
  const errno = path_create_directory(atFd, changetype<usize>(rel), rel.byteLength);
  if (errno != 0) return wasiFailed(errno, path);
  succeeded();
  return true;
}
