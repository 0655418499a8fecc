"""The WASI preview 1 functions that wait or spend, bounded by the call's deadline (abi.md §6).

wasmtime's own WASI runs these outside the epoch check, so a guest could hold a call far past
its deadline from inside one of them: ``poll_oneoff`` sleeps a 10 s clock subscription in full,
``random_get`` of 64 MiB runs for half a second, and ``fd_write`` to stdout waits on a pipe
reader 4 KiB at a time. omnicore defines its own in their place, as raw host functions
(``hostfunc.define_host_function``, whose return checks the deadline): they sleep in slices,
work in chunks, and stop at the deadline, after which the call fails with DeadlineExceeded.
The clocks are omnicore's too, so an absolute ``poll_oneoff`` time is on the clock the guest
read. Everything else of WASI is wasmtime's and returns at once (no preopens, no sockets,
stdin empty); ``tests/sandbox/test_wasi.py`` calls every function under a short deadline.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from typing import Any

import wasmtime

from omnicore.sandbox.fastcall import GuestMemory, RawInstance
from omnicore.sandbox.hostfunc import define_host_function
from omnicore.sandbox.wasi_output import CHUNK, STDERR, STDOUT, OutputSink

__all__ = ["BOUNDED", "WASI_MODULE", "define_wasi", "on_memory"]

WASI_MODULE = "wasi_snapshot_preview1"

_SUCCESS, _EBADF, _EINVAL = 0, 8, 28
_REALTIME, _MONOTONIC, _PROCESS_CPU, _THREAD_CPU = 0, 1, 2, 3
_EVENT_CLOCK, _EVENT_FD_READ, _EVENT_FD_WRITE = 0, 1, 2
_ABSTIME = 1
_STDIN = 0
#: A sleep is cut into slices this long, so a deadline moved earlier is seen within one.
SLEEP_SLICE_S = 0.05
#: random_get fills at most this much between two deadline checks.
RANDOM_CHUNK = 1 << 20
#: Entries (iovecs, subscriptions) handled between two deadline checks.
_BATCH = 256
_SUB = struct.Struct("<QB")  # userdata, tag (then the union at +8, aligned to 16)
_CLOCK = struct.Struct("<I4xQQH")  # id, timeout, precision, flags
_EVENT = struct.Struct("<QHB5xQH6x")  # userdata, error, type, nbytes, flags: 32 bytes
_IOVEC = struct.Struct("<II")
_monotonic = time.monotonic


def _clock_ns(clock_id: int) -> int | None:
    if clock_id == _REALTIME:
        return time.time_ns()
    if clock_id == _MONOTONIC:
        return time.monotonic_ns()
    if clock_id == _PROCESS_CPU:
        return time.process_time_ns()
    if clock_id == _THREAD_CPU:
        return time.thread_time_ns()
    return None


def clock_time_get(_out: OutputSink, mem: GuestMemory, clock_id: int, _precision: int,
                   out_ptr: int) -> int:
    now = _clock_ns(clock_id)
    if now is None:
        return _EINVAL
    mem.write(out_ptr, now.to_bytes(8, "little"), "clock_time_get result")
    return _SUCCESS


def clock_res_get(_out: OutputSink, mem: GuestMemory, clock_id: int, out_ptr: int) -> int:
    if clock_id not in (_REALTIME, _MONOTONIC, _PROCESS_CPU, _THREAD_CPU):
        return _EINVAL
    mem.write(out_ptr, (1000).to_bytes(8, "little"), "clock_res_get result")
    return _SUCCESS


def fd_write(out: OutputSink, mem: GuestMemory, fd: int, iovs: int, iovs_len: int,
             nwritten_ptr: int) -> int:
    """stdout/stderr into the log, 64 KiB at a time, until done or the deadline (a short
    write then, which the deadline check on the way back turns into DeadlineExceeded)."""
    if fd not in (STDOUT, STDERR):
        return _EBADF  # no preopens, no sockets: nothing else is open for writing
    mem.check(iovs, iovs_len * _IOVEC.size, "fd_write iovec array")
    mem.check(nwritten_ptr, 4, "fd_write nwritten")
    deadline = mem.deadline
    total = 0
    for i in range(iovs_len):
        if i % _BATCH == 0 and _monotonic() > deadline:
            break
        ptr, length = _IOVEC.unpack_from(mem.view, iovs + i * _IOVEC.size)
        mem.check(ptr, length, "fd_write buffer")
        # nwritten is a u32: a write of more is a short write (the guest writes the rest).
        length = min(length, 0xFFFF_FFFF - total)
        off = 0
        while off < length:
            n = min(CHUNK, length - off)
            out.write(fd, mem.view[ptr + off:ptr + off + n].tobytes())
            off += n
            if _monotonic() > deadline:
                break
        total += off
        if off < length or total == 0xFFFF_FFFF:
            break
    mem.write(nwritten_ptr, total.to_bytes(4, "little"), "fd_write nwritten")
    return _SUCCESS


def random_get(_out: OutputSink, mem: GuestMemory, buf: int, length: int) -> int:
    """Fill in chunks, checking the deadline between them."""
    mem.check(buf, length, "random_get buffer")
    deadline = mem.deadline
    off = 0
    while off < length:
        n = min(RANDOM_CHUNK, length - off)
        mem.view[buf + off:buf + off + n] = os.urandom(n)
        off += n
        if _monotonic() > deadline:
            break  # the guest never sees the rest: the call fails on the way back
    return _SUCCESS


def poll_oneoff(_out: OutputSink, mem: GuestMemory, in_ptr: int, out_ptr: int, nsubs: int,
                nevents_ptr: int) -> int:
    """Answer fd subscriptions at once (stdin is empty, stdout/stderr never block, nothing
    else is open) and sleep for clock subscriptions in slices, never past the deadline."""
    if nsubs == 0:
        return _EINVAL
    mem.check(in_ptr, nsubs * 48, "poll_oneoff subscriptions")
    mem.check(out_ptr, nsubs * _EVENT.size, "poll_oneoff events")
    mem.check(nevents_ptr, 4, "poll_oneoff nevents")
    deadline = mem.deadline
    ready: list[tuple[int, int, int]] = []  # userdata, errno, event type
    timers: list[tuple[int, int]] = []  # userdata, monotonic ns to fire at
    for i in range(nsubs):
        if i % _BATCH == 0 and _monotonic() > deadline:
            return _SUCCESS  # the call fails on the way back; nothing is reported
        base = in_ptr + i * 48
        userdata, tag = _SUB.unpack_from(mem.view, base)
        if tag == _EVENT_CLOCK:
            clock_id, timeout, _precision, flags = _CLOCK.unpack_from(mem.view, base + 16)
            now = _clock_ns(clock_id)
            if now is None:
                ready.append((userdata, _EINVAL, tag))
                continue
            wait = timeout - now if flags & _ABSTIME else timeout
            timers.append((userdata, time.monotonic_ns() + max(0, wait)))
        elif tag in (_EVENT_FD_READ, _EVENT_FD_WRITE):
            fd = int.from_bytes(mem.view[base + 16:base + 20], "little")
            ok = fd == _STDIN if tag == _EVENT_FD_READ else fd in (STDOUT, STDERR)
            ready.append((userdata, _SUCCESS if ok else _EBADF, tag))
        else:
            ready.append((userdata, _EINVAL, tag))
    if not ready and timers:
        wake = min(at for _, at in timers)
        while True:
            left = (wake - time.monotonic_ns()) / 1e9
            budget = deadline - _monotonic()
            if left <= 0 or budget <= 0:
                break
            time.sleep(min(left, budget, SLEEP_SLICE_S))
    now_ns = time.monotonic_ns()
    ready.extend((u, _SUCCESS, _EVENT_CLOCK) for u, at in timers if at <= now_ns)
    for i, (userdata, errno, kind) in enumerate(ready):
        _EVENT.pack_into(mem.view, out_ptr + i * _EVENT.size, userdata, errno, kind, 0, 0)
    mem.write(nevents_ptr, len(ready).to_bytes(4, "little"), "poll_oneoff nevents")
    return _SUCCESS


#: The functions replaced, with their wasm types as host-function parameter kinds.
BOUNDED: dict[str, tuple[tuple[str, ...], Callable[..., int]]] = {
    "fd_write": (("i32", "ptr", "len", "ptr"), fd_write),
    "poll_oneoff": (("ptr", "ptr", "len", "ptr"), poll_oneoff),
    "random_get": (("ptr", "len"), random_get),
    "clock_time_get": (("i32", "i64", "ptr"), clock_time_get),
    "clock_res_get": (("i32", "ptr"), clock_res_get),
}


def define_wasi(linker: wasmtime.Linker, output: OutputSink,
                live: dict[int, RawInstance], keepalive: list[Any], *,
                memory_of: Callable[[GuestMemory, int], GuestMemory] | None = None) -> None:
    """Define WASI preview 1 in ``linker``: wasmtime's, with :data:`BOUNDED` replaced.

    ``memory_of(memory, caller)`` maps the memory host functions get to the one WASI
    pointers refer to, when they differ (an Extism instance's host functions get its
    kernel's memory, WASI the calling module's). The linker is left allowing shadowing.
    """
    linker.define_wasi()
    # Left on (wasmtime-py cannot read it back): capability namespaces never collide.
    linker.allow_shadowing = True
    for name, (params, impl) in BOUNDED.items():
        if memory_of is not None:
            impl = on_memory(impl, memory_of)
        define_host_function(linker, WASI_MODULE, name, params, ("i32",), impl, output,
                             live, keepalive, pass_caller=memory_of is not None)


def on_memory(impl: Callable[..., int],
              memory_of: Callable[[GuestMemory, int], GuestMemory]) -> Callable[..., int]:
    """``impl`` called with ``memory_of(memory, caller)`` as its memory."""
    def mapped(state: Any, mem: GuestMemory, caller: int, *args: Any) -> int:
        return impl(state, memory_of(mem, caller), *args)

    return mapped
