"""The host's side of a capability: componentize-py's bindings inside a component, or the
test host's stand-in (:mod:`omnicore_plugin.testing`) outside one."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from omnicore_plugin._errors import HostError

__all__ = ["STAND_INS", "Binding"]

#: Capability name -> the module-like object :mod:`.testing` puts in place of the host.
STAND_INS: dict[str, Any] = {}


class Binding:
    """``wit_world.imports.<name>``, found at first use (a world imports only what a plugin
    uses, so the module exists only for a capability the plugin imports)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def module(self) -> Any:
        stand_in = STAND_INS.get(self._name)
        if stand_in is not None:
            return stand_in
        try:
            return importlib.import_module(f"wit_world.imports.{self._name}")
        except ImportError as exc:
            raise RuntimeError(
                f"omnicore_plugin.{self._name} runs inside a component built by `omnicore "
                f"build`, or under omnicore_plugin.testing.TestHost ({exc})") from None

    def call(self, function: str, *args: Any) -> Any:
        """Call the host's ``function``; its WIT ``error`` becomes :class:`HostError`."""
        fn: Callable[..., Any] = getattr(self.module(), function)
        try:
            return fn(*args)
        except Exception as exc:
            # componentize-py raises Err(value) for a WIT result's err side: here an
            # ``error`` enum member whose name is the status code (QUOTA, TOO_LARGE...), or
            # a ``failure`` record holding one and the host's message.
            value = getattr(exc, "value", None)
            detail = getattr(value, "message", "")
            code = getattr(getattr(value, "code", value), "name", None)
            if not isinstance(code, str):
                raise
            raise HostError(code, f"{self._name}.{function}", str(detail)) from None
