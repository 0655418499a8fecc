"""wasmtime's pooling instance allocator, which wasmtime-py's Config does not wrap.

Pre-reserves slots for memories, tables and instances so a fresh instance reuses a warm slot
instead of mapping new memory (specs: fresh instance ≈21 µs -> a few µs). Memories start as
copy-on-write images of the module's data (``memory_init_cow``, set by the engine).
"""

from __future__ import annotations

from dataclasses import dataclass

import wasmtime
from wasmtime import _ffi as ffi

__all__ = ["PoolingOptions", "enable_pooling"]


@dataclass(frozen=True, slots=True)
class PoolingOptions:
    """Engine-wide pool sizes. Instantiation fails (a Trap at call time) when exhausted."""

    total_instances: int = 512
    total_memories: int = 512
    total_tables: int = 512
    max_memory_size: int = 1 << 30
    table_elements: int = 100_000
    max_unused_warm_slots: int = 64
    #: Bytes at the start of each freed memory (and table) that stay resident and are reset
    #: in place instead of being decommitted: the next instance in the slot then takes no
    #: page faults there. A fresh instance for every call (``isolation: per-call``) writes
    #: its input and output in these first pages; measured 17.8 -> 13.1 µs for a fresh
    #: instance + 100 B call, while 1 MiB (a memset per instance) made it 28 µs.
    keep_resident_bytes: int = 65536


def enable_pooling(cfg: wasmtime.Config, options: PoolingOptions | None = None) -> None:
    """Switch ``cfg`` to the pooling allocator (must run before the Engine is created)."""
    opts = options or PoolingOptions()
    pac = ffi.wasmtime_pooling_allocation_config_new()
    try:
        ffi.wasmtime_pooling_allocation_config_total_core_instances_set(pac, opts.total_instances)
        ffi.wasmtime_pooling_allocation_config_total_memories_set(pac, opts.total_memories)
        ffi.wasmtime_pooling_allocation_config_total_tables_set(pac, opts.total_tables)
        ffi.wasmtime_pooling_allocation_config_total_stacks_set(pac, 0)
        ffi.wasmtime_pooling_allocation_config_max_memory_size_set(pac, opts.max_memory_size)
        ffi.wasmtime_pooling_allocation_config_table_elements_set(pac, opts.table_elements)
        ffi.wasmtime_pooling_allocation_config_max_unused_warm_slots_set(
            pac, opts.max_unused_warm_slots)
        ffi.wasmtime_pooling_allocation_config_linear_memory_keep_resident_set(
            pac, opts.keep_resident_bytes)
        ffi.wasmtime_pooling_allocation_config_table_keep_resident_set(
            pac, opts.keep_resident_bytes)
        ffi.wasmtime_pooling_allocation_strategy_set(cfg.ptr(), pac)
    finally:
        ffi.wasmtime_pooling_allocation_config_delete(pac)


