"""WebAssembly components as plugins (specs/components.md).

A ``.wasm`` whose header says "component" loads as a :class:`ComponentModule` (ABI
``"component"``) and runs in a :class:`ComponentRuntime`, called with a JSON array of its
arguments and answering JSON, under the same limits as core modules.

The package needs private names of wasmtime's component C API (``sandbox/_wasmtime.py``):
with a wasmtime that lacks one, importing it (what loading a component does first) raises
PluginLoadError naming them, and core modules keep running.
"""

from omnicore.sandbox._wasmtime import require

require("components")

from omnicore.sandbox.component.compiled import (  # noqa: E402 (after the check)
    COMPONENT_ABI,
    ComponentModule,
    is_component,
    load_component,
)
from omnicore.sandbox.component.runtime import ComponentRuntime  # noqa: E402

__all__ = ["COMPONENT_ABI", "ComponentModule", "ComponentRuntime", "is_component",
           "load_component"]
