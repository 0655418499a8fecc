"""The memory kernel on its own (kernel.wat): every export, as PDKs and the host drive it."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
import wasmtime

from omnicore.extism._kernel import FIRST_HANDLE, KERNEL_FUNCTIONS, STATE, kernel_wasm


class Kernel:
    def __init__(self, pages: int | None = None) -> None:
        self.store = wasmtime.Store()
        if pages is not None:
            self.store.set_limits(memory_size=pages * 65536)
        self.instance = wasmtime.Instance(
            self.store, wasmtime.Module(self.store.engine, kernel_wasm()), [])
        mem = self.instance.exports(self.store)["memory"]
        assert isinstance(mem, wasmtime.Memory)
        self.memory = mem

    def __getattr__(self, name: str) -> Callable[..., Any]:
        func = self.instance.exports(self.store)[name]
        return lambda *args: func(self.store, *args)  # type: ignore[operator]

    def put(self, data: bytes) -> int:
        h: int = self.alloc(len(data))
        for i, b in enumerate(data):
            self.store_u8(h + i, b)
        return h

    def word(self, name: str) -> int:
        at = STATE[name]
        return int.from_bytes(self.memory.read(self.store, at, at + 8), "little")


@pytest.fixture
def k() -> Kernel:
    return Kernel()


def test_exports_are_exactly_the_kernel(k: Kernel) -> None:
    assert set(k.instance.exports(k.store)) == {*KERNEL_FUNCTIONS, "memory"}


def test_alloc_store_load_length(k: Kernel) -> None:
    h = k.put(b"hello")
    assert h == FIRST_HANDLE and k.length(h) == 5 and k.length_unsafe(h) == 5
    k.store_u64(h, 0x0102030405060708)
    assert k.load_u64(h) == 0x0102030405060708 and k.load_u8(h) == 8


def test_zero_and_bad_handles(k: Kernel) -> None:
    assert k.alloc(0) == 0
    h = k.alloc(10)
    assert [k.length(x) for x in (0, h + 1, 10**6)] == [0, 0, 0]
    assert [k.length_unsafe(x) for x in (0, 7, 10**6)] == [0, 0, 0]
    k.free(h + 3)  # not a handle: a no-op
    assert k.length(h) == 10


def test_freed_blocks_are_reused_and_split(k: Kernel) -> None:
    a, b = k.alloc(1000), k.alloc(8)
    k.free(a)
    assert k.length(a) == 0 and k.length_unsafe(a) == 0 and k.length(b) == 8
    # While memory holds it, a new block is bumped (O(1), as Extism's kernel does)...
    c = k.alloc(16)
    assert c > b
    filler = k.alloc(65536 - (c + 16) - 16)  # ...up to the end of the page
    assert k.memory_bytes() == 65536
    # ...and then a freed block is reused (split) rather than growing memory.
    small, rest = k.alloc(16), k.alloc(500)
    assert small == a and a < rest < b
    assert [k.length(x) for x in (small, rest, b, filler)] == [16, 500, 8, 65536 - c - 32]
    assert k.memory_bytes() == 65536
    k.alloc(600)  # nothing freed fits: memory grows
    assert k.memory_bytes() == 131072


def test_growth_and_memory_bytes(k: Kernel) -> None:
    assert k.memory_bytes() == 65536
    h = k.alloc(200_000)
    k.store_u8(h + 199_999, 7)
    assert k.load_u8(h + 199_999) == 7 and k.memory_bytes() >= 200_016


def test_alloc_past_the_limit_traps_in_oom() -> None:
    k = Kernel(pages=2)
    with pytest.raises(wasmtime.Trap, match="oom"):
        k.alloc(200_000)
    with pytest.raises(wasmtime.Trap, match="oom"):
        Kernel().alloc(2**40)


def test_input_output_error_and_reset(k: Kernel) -> None:
    h = k.put(b"abcdefghij")
    k.input_set(h, 10)
    assert k.input_length() == 10 and k.input_offset() == h
    assert k.input_load_u8(1) == ord("b")
    assert k.input_load_u64(0) == int.from_bytes(b"abcdefgh", "little")
    out = k.put(b"out")
    k.output_set(out, 3)
    assert (k.output_offset(), k.output_length()) == (out, 3)
    k.error_set(k.put(b"bad"))
    assert k.error_get() != 0
    k.free(h)
    assert k.input_length() == 0
    k.reset()
    assert (k.input_length(), k.output_offset(), k.error_get(), k.length(out)) == (0,) * 4
    assert k.alloc(3) == FIRST_HANDLE and k.word("end") == FIRST_HANDLE + 8


@pytest.mark.parametrize(("fn", "args"), [
    ("load_u8", (2**33,)), ("store_u64", (65535, 1)), ("load_u64", (8,)),
    ("store_u8", (63, 1)), ("input_load_u8", (0,)), ("input_load_u64", (-1,)),
])
def test_bad_offsets_trap(k: Kernel, fn: str, args: tuple[int, ...]) -> None:
    with pytest.raises(wasmtime.Trap):
        getattr(k, fn)(*args)


@pytest.mark.parametrize("fn", ["input_load_u8", "input_load_u64"])
def test_input_reads_stay_in_the_input_and_the_block_area(k: Kernel, fn: str) -> None:
    # The address checks are inline in both input reads (no helper call): every way to aim one
    # outside the input, or through input_set at the kernel's state or past 4 GiB, traps.
    width = 1 if fn == "input_load_u8" else 8
    read = getattr(k, fn)
    h = k.put(bytes(range(16)))
    k.input_set(h, 16)
    assert read(16 - width) == int.from_bytes(bytes(range(16 - width, 16)), "little")
    for p in (16 - width + 1, 16, 2**32, 2**63, -8, -1):
        with pytest.raises(wasmtime.Trap):
            read(p)
    # The state words, past 4 GiB, or wrapping round to the state words.
    for offset, p in ((0, 0), (56, 0), (56, 7), (2**33, 0), (2**32 - 4, 0), (-8, 8)):
        k.input_set(offset, 64)
        with pytest.raises(wasmtime.Trap):
            read(p)
    k.input_set(h, 16)
    assert read(0) == (0x0706050403020100 if width == 8 else 0)
    assert k.word("end") > FIRST_HANDLE  # the state words were never written through


def test_random_allocs_and_frees_never_overlap(k: Kernel) -> None:
    # Bump while memory holds a block, reuse from the free hint after: every live block keeps
    # its bytes, its length, and its own room, through 3,000 random operations.
    rng = random.Random(21)
    live: dict[int, int] = {}
    marks: dict[int, int] = {}
    for step in range(3000):
        if live and rng.random() < 0.45:
            h = rng.choice(list(live))
            k.free(h)
            del live[h]
            assert k.length(h) == 0
            continue
        n = rng.choice([1, 8, 9, 24, 100, 500, 3000])
        h = k.alloc(n)
        assert h % 8 == 0 and all(h + n <= o or o + live[o] <= h for o in live), step
        live[h] = n
        k.store_u8(h, step & 0xFF)
        k.store_u8(h + n - 1, step & 0xFF)
        marks[h] = step & 0xFF
    for h, n in live.items():
        assert k.length(h) == n == k.length_unsafe(h)
        assert k.load_u8(h) == k.load_u8(h + n - 1) == marks[h]


def test_only_block_starts_are_handles(k: Kernel) -> None:
    h = k.alloc(64)
    k.store_u64(h + 16, (0x6F6D6E69 << 32) | 8)  # a header forged inside the block's data...
    k.store_u64(h + 24, 8)
    assert k.length(h + 32) == 8  # ...passes the O(1) check (harmless: the plugin's own bytes)
    for bad in (h + 3, h + 8, h + 64, 79, 81, 10**9, 2**63):
        assert k.length(bad) == 0
        k.free(bad)  # a no-op
    assert k.length(h) == 64
