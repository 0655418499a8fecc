"""``sandbox.*``: what the plugin engine is made with (its compiler, module cache, ticker,
allocator) and the limits and breakers every plugin gets unless its own settings say
otherwise. Read by :meth:`omnicore.sandbox.SandboxEngine.for_config` and the plugin host;
part of :class:`omnicore.config.schema.OmniConfig`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from omnicore.config.strict import Strict

__all__ = ["LIMIT_KEYS", "CircuitConfig", "LimitsConfig", "SandboxConfig"]


class LimitsConfig(Strict):
    """``sandbox.limits.*``: default limits for every plugin."""

    max_memory_bytes: int = Field(default=64 * 1024 * 1024, gt=0, description="linear memory cap")
    timeout_ms: int = Field(default=1000, gt=0, description="wall-clock deadline per call")
    fuel: int | None = Field(
        default=None, gt=0, description="instructions budget per call; none = off"
    )
    max_input_bytes: int = Field(default=16 * 1024 * 1024, gt=0, description="largest call input")
    max_output_bytes: int = Field(default=16 * 1024 * 1024, gt=0, description="largest call output")
    pool_size: int = Field(default=4, gt=0, description="instances kept for concurrent calls")
    max_table_elements: int = Field(default=100_000, gt=0, description="elements per wasm table")
    max_tables: int = Field(default=4, gt=0, description="wasm tables per instance")
    max_log_bytes_per_s: int = Field(default=1024 * 1024, gt=0,
                                     description="plugin log volume; the excess is dropped")
    max_log_lines_per_s: int = Field(default=500, gt=0,
                                     description="plugin log records; the excess is dropped")
    isolation: Literal["pooled", "per-call"] = Field(
        default="pooled",
        description="per-call: a fresh instance for every call, so no state survives it")
    idle_timeout_ms: int | None = Field(
        default=60_000, gt=0,
        description="release a plugin's idle instances this long after their last call; "
                    "none = keep them")


LIMIT_KEYS = tuple(LimitsConfig.model_fields)


class CircuitConfig(Strict):
    """``sandbox.circuit.*``: per-plugin circuit breakers."""

    failure_threshold: int = Field(default=5, gt=0, description="consecutive failures that open it")
    cooldown_s: float = Field(default=30.0, gt=0, description="seconds before a trial call")


class SandboxConfig(Strict):
    """``sandbox.*``."""

    cache_dir: Path | None = Field(
        default=None, description="compiled-module cache; <data_dir>/cache"
    )
    baked_dir: Path | None = Field(
        default=None, description="read-only compiled modules a container image ships, tried "
        "before the cache and authenticated by the key its build left beside it "
        "(<baked_dir>.key; specs/security.md, Compiled code); none by default"
    )
    epoch_tick_ms: int = Field(default=10, gt=0, description="deadline ticker period")
    watch: bool = Field(default=True, description="watch plugins_dir and reload on change")
    load_wait_ms: int = Field(
        default=30_000, gt=0,
        description="how long a call to a plugin still loading (a start, a file dropped in) "
                    "waits for it before it fails with PluginCompiling; a route's deadline "
                    "ends the wait sooner",
    )
    pooling: bool = Field(
        default=False,
        description="wasmtime's pooling allocator: fresh instances ~40% faster, but at most "
                    "512 instances and 1 GiB per memory, with address space reserved up front",
    )
    compiler: Literal["cranelift", "winch"] = Field(
        default="cranelift",
        description="whose code serves: cranelift (fast code; a module the cache lacks serves "
                    "from Winch's code until Cranelift's is ready) or winch (wasmtime's "
                    "baseline compiler only: about 8x less compile CPU for slower code, for "
                    "development loops and test runs)",
    )
    limits: LimitsConfig = Field(default_factory=lambda: LimitsConfig())
    circuit: CircuitConfig = Field(default_factory=lambda: CircuitConfig())
