"""WASI functions answered with WASI's own refusal instead of wasmtime's implementation.

Toolchains import some WASI interfaces whether or not the code uses them. wasmtime-py's
``add_wasip2`` already answers sockets (every address refused: ``error-code::access-denied``)
and the filesystem (only the ``fs`` grant's directories are preopened: .files). For
``wasi:http`` the host links wasmtime's own ``wasi:http/types`` (local values only: fields,
requests, bodies; nothing leaves the process) and replaces
``wasi:http/outgoing-handler#handle`` — the only function that sends — with one answering
``err(error-code::HTTP-request-denied)``. Any other function of a ``wasi:`` interface the
host does not supply traps when called (specs/components.md "WASI").

A replacement is a raw C callback (wasmtime's own type check applies when the component is
linked): it drops every resource the guest handed over, then answers ``err`` with a case of
the function's error type.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from ctypes import byref, c_void_p
from typing import Any

from wasmtime import component as cm

from omnicore.sandbox._wasmtime import (
    CAPI,
    COMPONENT_KINDS,
    error_from,
    error_raw,
    linker_instance_add_func,
)

__all__ = ["HTTP_HANDLER", "link_http_denied", "refuse"]

#: The interface whose ``handle`` sends a request.
HTTP_HANDLER = "wasi:http/outgoing-handler@"
_RESULT = COMPONENT_KINDS["RESULT"]
_VARIANT = COMPONENT_KINDS["VARIANT"]
_ENUM = COMPONENT_KINDS["ENUM"]
_RESOURCE = COMPONENT_KINDS["RESOURCE"]
_OPTION = COMPONENT_KINDS["OPTION"]


def _drop(context: Any, val: Any) -> None:
    """Drop a resource the guest handed over, owned or borrowed (wasmtime requires it of
    every resource a host function is given; an owned one stays in the store's table else)."""
    if val.kind == _RESOURCE and val.of.resource:
        error = CAPI.wasmtime_component_resource_any_drop(context, val.of.resource)
        if error:
            error_from(error)  # freed; the drop itself cannot matter


def _refusal(kind: int, case: str) -> Any:
    """A callback answering ``err(case)``, ``case`` a variant case (``kind`` _VARIANT,
    no payload) or an enum case (_ENUM)."""
    name = case.encode()

    @CAPI.wasmtime_component_func_callback_t  # type: ignore[untyped-decorator]
    def answer_err(_env: int, context: Any, _ty: Any, args: Any, nargs: int, results: Any,
                   nresults: int) -> int:
        try:
            for i in range(nargs):
                val = args[i]
                _drop(context, val)
                if val.kind == _OPTION and val.of.option:
                    _drop(context, val.of.option.contents)
            answer = CAPI.wasmtime_component_val_t()
            answer.kind = kind
            if kind == _VARIANT:
                answer.of.variant.discriminant = CAPI.str_to_capi(name.decode())
                answer.of.variant.val = None
            else:
                answer.of.enumeration = CAPI.str_to_capi(name.decode())
            out = results[0]
            out.kind = _RESULT
            out.of.result.is_ok = False
            out.of.result.val = CAPI.wasmtime_component_val_new(byref(answer))
        except Exception as exc:
            return error_raw(f"WASI refusal failed: {type(exc).__name__}: {exc}")
        return 0

    return answer_err


_HTTP_DENIED = _refusal(_VARIANT, "HTTP-request-denied")
#: WASI filesystem's ``error-code::not-permitted``.
NOT_PERMITTED = _refusal(_ENUM, "not-permitted")


@ctypes.CFUNCTYPE(None, c_void_p)  # type: ignore[untyped-decorator]
def _no_finalizer(_env: int | None) -> None:
    return None


def refuse(linker: cm.Linker, interface: str, function: str,
           callback: Callable[..., int]) -> None:
    """Define ``interface#function`` in ``linker`` as ``callback`` (a :func:`_refusal`),
    replacing what is there. ``interface`` must be named exactly as it was defined (a name
    new to the linker makes a new instance, which replaces a defined one of the same
    major version)."""
    linker.allow_shadowing = True
    try:
        with linker.root() as root, root.add_instance(interface) as inst:
            linker_instance_add_func(inst, function, callback, 0, _no_finalizer)
    finally:
        linker.allow_shadowing = False


def link_http_denied(linker: cm.Linker, imports: tuple[str, ...]) -> None:
    """Link ``wasi:http`` for a component importing it without a grant: wasmtime's types,
    and a ``handle`` that answers ``HTTP-request-denied`` under each imported version."""
    # wasi:http brings interfaces add_wasip2 defined already.
    linker.allow_shadowing = True
    linker.add_wasi_http()
    linker.allow_shadowing = False
    for name in imports:
        if name.startswith(HTTP_HANDLER):
            refuse(linker, name, "handle", _HTTP_DENIED)
