"""Standard WASI interfaces a component imports without a grant, answered with WASI's denial.

Toolchains import some WASI interfaces whether or not the code uses them. wasmtime-py's
``add_wasip2`` already answers sockets (every address refused: ``error-code::access-denied``)
and the filesystem (no directory preopened). For ``wasi:http`` the host links wasmtime's own
``wasi:http/types`` (local values only: fields, requests, bodies; nothing leaves the
process) and replaces ``wasi:http/outgoing-handler#handle`` — the only function that sends
— with one answering ``err(error-code::HTTP-request-denied)``. Any other function of a
``wasi:`` interface the host does not supply traps when called (specs/components.md "WASI").
"""

from __future__ import annotations

import ctypes
from ctypes import byref, c_void_p, create_string_buffer
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime import component as cm

__all__ = ["HTTP_HANDLER", "link_http_denied"]

#: The interface whose ``handle`` sends a request.
HTTP_HANDLER = "wasi:http/outgoing-handler@"
_RESULT = int(ffi.WASMTIME_COMPONENT_RESULT.value)
_VARIANT = int(ffi.WASMTIME_COMPONENT_VARIANT.value)
_RESOURCE = int(ffi.WASMTIME_COMPONENT_RESOURCE.value)
_OPTION = int(ffi.WASMTIME_COMPONENT_OPTION.value)


def _drop(context: Any, val: Any) -> None:
    """Drop an owned resource the guest handed over (else it stays in the store's table)."""
    if val.kind == _RESOURCE and val.of.resource:
        error = ffi.wasmtime_component_resource_any_drop(context, val.of.resource)
        if error:
            wasmtime.WasmtimeError._from_ptr(error)  # freed; the drop itself cannot matter


@ffi.wasmtime_component_func_callback_t  # type: ignore[untyped-decorator]
def _denied(_env: int, context: Any, _ty: Any, args: Any, nargs: int, results: Any,
            nresults: int) -> int:
    try:
        for i in range(nargs):
            val = args[i]
            _drop(context, val)
            if val.kind == _OPTION and val.of.option:
                _drop(context, val.of.option.contents)
        answer = ffi.wasmtime_component_val_t()
        answer.kind = _VARIANT
        answer.of.variant.discriminant = ffi.str_to_capi("HTTP-request-denied")
        answer.of.variant.val = None
        out = results[0]
        out.kind = _RESULT
        out.of.result.is_ok = False
        out.of.result.val = ffi.wasmtime_component_val_new(byref(answer))
    except Exception as exc:
        error = wasmtime.WasmtimeError(f"wasi:http denial failed: {type(exc).__name__}: {exc}")
        return ctypes.cast(error._consume(), c_void_p).value or 0
    return 0


@ctypes.CFUNCTYPE(None, c_void_p)  # type: ignore[untyped-decorator]
def _no_finalizer(_env: int | None) -> None:
    return None


def link_http_denied(linker: cm.Linker, imports: tuple[str, ...]) -> None:
    """Link ``wasi:http`` for a component importing it without a grant: wasmtime's types,
    and a ``handle`` that answers ``HTTP-request-denied`` under each imported version."""
    linker.allow_shadowing = True
    linker.add_wasi_http()
    for name in imports:
        if not name.startswith(HTTP_HANDLER):
            continue
        with linker.root() as root, root.add_instance(name) as inst:
            raw = b"handle"
            error = ffi.wasmtime_component_linker_instance_add_func(
                inst.ptr(), create_string_buffer(raw), len(raw), _denied, 0, _no_finalizer)
            if error:
                raise wasmtime.WasmtimeError._from_ptr(error)
    linker.allow_shadowing = False
