"""wasmtime's pooling instance allocator, which wasmtime-py's Config does not wrap.

Pre-reserves slots for memories, tables and instances so a fresh instance reuses a warm slot
instead of mapping new memory (specs: fresh instance ≈21 µs -> a few µs).
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
        ffi.wasmtime_pooling_allocation_strategy_set(cfg.ptr(), pac)
    finally:
        ffi.wasmtime_pooling_allocation_config_delete(pac)


