"""The kernel half of ``extism:host/env``: ``kernel.wat`` (ours) and its memory layout."""

from __future__ import annotations

from functools import cache
from importlib import resources

__all__ = ["BLOCK_TAG", "FIRST_HANDLE", "KERNEL_FUNCTIONS", "STATE", "kernel_wasm"]

Sig = tuple[tuple[str, ...], tuple[str, ...]]

#: Every function the kernel exports, with its wasm type. A plugin may import any of them.
KERNEL_FUNCTIONS: dict[str, Sig] = {
    "alloc": (("i64",), ("i64",)),
    "free": (("i64",), ()),
    "length": (("i64",), ("i64",)),
    "length_unsafe": (("i64",), ("i64",)),
    "load_u8": (("i64",), ("i32",)),
    "load_u64": (("i64",), ("i64",)),
    "store_u8": (("i64", "i32"), ()),
    "store_u64": (("i64", "i64"), ()),
    "input_set": (("i64", "i64"), ()),
    "input_length": ((), ("i64",)),
    "input_offset": ((), ("i64",)),
    "input_load_u8": (("i64",), ("i32",)),
    "input_load_u64": (("i64",), ("i64",)),
    "output_set": (("i64", "i64"), ()),
    "output_length": ((), ("i64",)),
    "output_offset": ((), ("i64",)),
    "error_set": (("i64",), ()),
    "error_get": ((), ("i64",)),
    "memory_bytes": ((), ("i64",)),
    "reset": ((), ()),
}

#: Byte offsets of the call state (u64 little-endian each) in kernel memory (kernel.wat).
STATE = {"end": 0, "input_offset": 8, "input_length": 16, "output_offset": 24,
         "output_length": 32, "error": 40, "free_hint": 48}
#: Or'ed into a block header's capacity word: a handle is checked in O(1) by it.
BLOCK_TAG = 0x6F6D6E69 << 32
#: The first block's header is at 64; its handle (the first byte of its data) at 80.
FIRST_HANDLE = 80


@cache
def kernel_wasm() -> bytes:
    """The kernel module's bytes (compiled from ``kernel.wat`` once per process)."""
    import wasmtime

    text = resources.files(__package__).joinpath("kernel.wat").read_text(encoding="utf-8")
    return bytes(wasmtime.wat2wasm(text))
