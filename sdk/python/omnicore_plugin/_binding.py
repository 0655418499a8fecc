"""The host's side of a capability: componentize-py's bindings inside a component, or, under
:mod:`omnicore_plugin.testing`, omnicore's test host in this process (the host's own
capability code: ``omnicore.toolchains.testhost.native``)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from omnicore_plugin._errors import HostError

__all__ = ["NATIVE", "Binding"]

#: While a TestHost is entered: its door, ``door(capability, function, args)``, answering in
#: the WIT JSON mapping (a result as ``{"ok": v}`` or ``{"err": case or failure}``).
NATIVE: list[Callable[[str, str, tuple[Any, ...]], Any]] = []


class Binding:
    """``wit_world.imports.<name>``, found at first use (a world imports only what a plugin
    uses, so the module exists only for a capability the plugin imports)."""

    def __init__(self, name: str) -> None:
        self._name = name

    def module(self) -> Any:
        try:
            return importlib.import_module(f"wit_world.imports.{self._name}")
        except ImportError as exc:
            raise RuntimeError(
                f"omnicore_plugin.{self._name} runs inside a component built by `omnicore "
                f"build`, or under omnicore_plugin.testing.TestHost ({exc})") from None

    def case(self, enum: str, case: str) -> Any:
        """The case ``case`` of the interface's enum ``enum`` (``case("Level", "info")``), as
        the host function takes it: componentize-py's member (``Level.INFO``) or the name."""
        if NATIVE:
            return case
        return getattr(getattr(self.module(), enum), case.upper().replace("-", "_"))

    def call(self, function: str, *args: Any) -> Any:
        """Call the host's ``function``; its WIT ``error`` becomes :class:`HostError`."""
        if NATIVE:
            return self._native(function, args)
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

    def _native(self, function: str, args: tuple[Any, ...]) -> Any:
        """The test host's answer as componentize-py's bindings give it: a result's ``ok``
        (a record with attributes), its ``err`` raised."""
        answer = NATIVE[-1](self._name, function, args)
        if not isinstance(answer, dict):  # not a result: no record is answered outside one
            return answer
        if "err" in answer:
            err = answer["err"]
            code, detail = (err["code"], err["message"]) if isinstance(err, dict) else (err, "")
            raise HostError(code.upper().replace("-", "_"), f"{self._name}.{function}", detail)
        ok = answer["ok"]
        return SimpleNamespace(**ok) if isinstance(ok, dict) else ok
