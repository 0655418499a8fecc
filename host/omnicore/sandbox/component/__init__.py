"""WebAssembly components as plugins (specs/components.md).

A ``.wasm`` whose header says "component" loads as a :class:`ComponentModule` (ABI
``"component"``) and runs in a :class:`ComponentRuntime`, called with a JSON array of its
arguments and answering JSON, under the same limits as core modules.
"""

from omnicore.sandbox.component.compiled import (
    COMPONENT_ABI,
    ComponentModule,
    is_component,
    load_component,
)
from omnicore.sandbox.component.runtime import ComponentRuntime

__all__ = ["COMPONENT_ABI", "ComponentModule", "ComponentRuntime", "is_component",
           "load_component"]
