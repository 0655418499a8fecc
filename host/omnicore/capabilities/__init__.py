"""Host capabilities: one module per ``omnicore:<name>`` import namespace (specs/abi.md §4)."""

from omnicore.capabilities.builtin import builtin_capabilities

__all__ = ["builtin_capabilities"]
