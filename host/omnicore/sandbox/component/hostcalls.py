"""omnicore's capabilities as the WIT interfaces ``omnicore:plugin/<capability>`` (sdk/wit/).

A component requests a capability by importing its interface, as a core module does by
importing ``omnicore:<capability>``: :func:`requested` reads the requests from the
component's imports, and :func:`define` links the granted ones into a component linker,
each function a :class:`~omnicore.sandbox.capability.WitFunction` of the capability, checked
against the type the component imports it with (a different type is refused at load).

Host functions are called through wasmtime's C callback with the arguments read flat
(:mod:`.hostflat`: one unpack of wasmtime's C values) where their types allow, else by the
:mod:`.values` codecs (the same JSON mapping as exports; ``list<u8>`` as ``bytes``) and the
answer written by them, so a ``result``'s case is kept (wasmtime-py's own conversion loses
it). An exception in a host function traps the call, with its text in the trap.
"""

from __future__ import annotations

import ctypes
import itertools
import logging
import math
import re
import threading
from collections.abc import Callable
from ctypes import CFUNCTYPE, c_size_t, c_void_p
from dataclasses import dataclass
from typing import Any

import wasmtime
from wasmtime import component as cm

from omnicore.errors import InvalidModule
from omnicore.sandbox._wasmtime import CAPI, error_raw, linker_instance_add_func
from omnicore.sandbox.capability import CapabilityRegistry, WitFunction
from omnicore.sandbox.component import hostflat
from omnicore.sandbox.component.flatcall import COMPCALL
from omnicore.sandbox.component.values import Codec, lift_bytes
from omnicore.sandbox.component.world import read_function
from omnicore.sandbox.guestmem import HostTrap

__all__ = ["HANDLER_CALL", "PACKAGE", "call_ends", "capability_of", "define", "enter",
           "handler_export", "leave", "requested", "take_refusal"]

#: The WIT package of omnicore's interfaces, and the major version this host speaks.
PACKAGE = "omnicore:plugin"
_NAME = re.compile(r"omnicore:plugin/([a-z][a-z0-9-]*)@1\.\d+\.\d+")
#: The export every omnicore plugin component has: ``call(handler, input)``.
HANDLER_CALL = "call"


def capability_of(import_name: str) -> str | None:
    """The capability an import requests (``omnicore:plugin/kv@1.0.0`` -> ``kv``), None for
    an import outside the package; InvalidModule for one of the package at another major
    version."""
    if not import_name.startswith(PACKAGE + "/"):
        return None
    m = _NAME.fullmatch(import_name)
    if m is None:
        raise InvalidModule(f"{import_name} is not an interface this host supplies: it speaks "
                            f"{PACKAGE}@1.x (sdk/wit/plugin.wit)")
    return m.group(1)


def requested(imports: tuple[str, ...]) -> frozenset[str]:
    """The capabilities ``imports`` request."""
    return frozenset(c for c in map(capability_of, imports) if c is not None
                     and c != "handler")


def handler_export(component: cm.Component, engine: wasmtime.Engine) -> str | None:
    """The name of the exported ``omnicore:plugin/handler`` interface, or None."""
    for name in component.type.exports(engine):
        if capability_of(name) == "handler":
            return str(name)
    return None


class _CallState(threading.local):
    """The component call this thread is making. The class attributes are each thread's
    defaults: a read never misses (``getattr`` with a default raises and catches an
    AttributeError inside, and :func:`leave` runs after every call)."""

    deadline: float = math.inf
    refusal: str | None = None
    ends: dict[str, Callable[[], None]] | None = None


_CALL = _CallState()
log = logging.getLogger("omnicore.sandbox")


def enter(deadline: float) -> None:
    """Set the deadline (``time.monotonic()``) of the component call this thread makes next:
    timed host functions are bounded by it (wasmtime calls them on the caller's thread)."""
    _CALL.deadline = deadline
    _CALL.refusal = None


def call_ends() -> dict[str, Callable[[], None]]:
    """What host functions leave for the end of the component call this thread is making (an
    open SQL transaction rolled back), by capability; :func:`leave` runs them."""
    ends = _CALL.ends
    if ends is None:
        ends = _CALL.ends = {}
    return ends


def leave() -> None:
    """The component call this thread made has ended, however it ended: run what its host
    functions left for then (:func:`call_ends`), once."""
    ends = _CALL.ends
    if not ends:
        return
    _CALL.ends = None
    for name, end in ends.items():
        try:
            end()
        except Exception:
            log.exception("ending a component call's %s state failed", name)


def take_refusal() -> str | None:
    """What the host function that failed this thread's last call said (then forgotten)."""
    refusal = _CALL.refusal
    _CALL.refusal = None
    return refusal


@dataclass(frozen=True, slots=True)
class _Bound:
    """One linked host function: what the C callback needs to run it."""

    label: str
    impl: Any
    state: Any
    params: tuple[Codec, ...]
    result: Codec | None
    timed: bool
    #: The flat reader of the arguments and writer of the answer (None: the codecs').
    flat: hostflat.Reader | None = None
    write: hostflat.Writer | None = None
    #: The parameters as the C callback reads them (sandbox/_compcall.c's HostCall: a WIT
    #: scalar's name, "string" for a string, "enum" for an enum, "bytes" for list<u8>), and
    #: the result's type name (None: no result); None where the C callback does not serve
    #: the function.
    c_kinds: tuple[str, ...] | None = None
    c_result: str | None = None


#: Whether host callbacks read their arguments flat where they can (the differential test
#: turns it off to compare with the codecs' reading).
_flat_arguments = True


_BOUND: dict[int, _Bound] = {}
#: The C callback's HostCall of each function it serves, by the same key (its env).
_HOSTS: dict[int, Any] = {}
_NEXT = itertools.count(1)


def define(linker: cm.Linker, component: cm.Component, engine: wasmtime.Engine,
           registry: CapabilityRegistry, states: dict[str, Any], plugin: str) -> None:
    """Link the ``omnicore:plugin`` interfaces ``component`` imports, each capability's
    functions bound to ``states[capability]`` (every requested capability is in it: the
    caller checked the grants). InvalidModule for an interface or function the capability
    does not have, or a function imported with another type than the host's."""
    for name, ext in component.type.imports(engine).items():
        cname = capability_of(name)
        if cname is None:
            continue
        cap = registry.get(cname)
        functions = {f.name: f for f in cap.wit} if cap is not None else {}
        if not functions:
            raise InvalidModule(f"plugin {plugin!r} imports {name}, which this host does not "
                                f"supply to components (capabilities with a WIT interface: "
                                f"{', '.join(c.name for c in registry if c.wit)})",
                                plugin=plugin)
        itype = ext.ty
        if not isinstance(itype, cm.ComponentInstanceType):
            raise InvalidModule(f"plugin {plugin!r} imports {name} as a "
                                f"{type(itype).__name__}; it is an interface", plugin=plugin)
        bound: list[tuple[str, _Bound]] = []
        for fname, item in itype.exports(engine).items():
            fty = item.ty
            if not isinstance(fty, cm.FuncType):
                continue  # a type (an enum): checked through the functions that use it
            bound.append((fname, _bind(functions, fty, name, fname, states[cname], plugin)))
        with linker.root() as root, root.add_instance(name) as inst:
            for fname, entry in bound:
                _add_func(inst, fname, entry)


def _bind(functions: dict[str, WitFunction], fty: cm.FuncType, iface: str, fname: str,
          state: Any, plugin: str) -> _Bound:
    wit = functions.get(fname)
    if wit is None:
        raise InvalidModule(f"plugin {plugin!r} imports {iface}#{fname}, which the host's "
                            f"{iface} does not have (it has {', '.join(functions)}); "
                            "rebuild against sdk/wit/plugin.wit", plugin=plugin)
    fn = read_function(fname, (iface, fname), fty)
    if fn.signature != wit.signature:
        raise InvalidModule(f"plugin {plugin!r} imports {iface}#{fname} as {fn.signature}, "
                            f"and the host's is {wit.signature}; rebuild against "
                            "sdk/wit/plugin.wit", plugin=plugin)
    params = tuple(c for _, c in fn.params)
    flat = hostflat.reader(tuple(c.canon() for c in params)) if _flat_arguments else None
    write = hostflat.writer(fn.result.canon()) if flat is not None and fn.result else None
    kinds = None
    # (A timed function takes the deadline first; the C callback holds up to 16 parameters.)
    if flat is not None and not wit.timed and len(params) <= _C_MAX_PARAMS:
        kinds = tuple(_c_kind(c.canon()) for c in params)
    return _Bound(f"{iface}#{fname}", wit.impl, state, params, fn.result, wit.timed, flat,
                  write, kinds, fn.result.canon()[0] if fn.result is not None else None)


#: The most parameters the C callback reads (sandbox/_compcall.c's MAX_CORE).
_C_MAX_PARAMS = COMPCALL.MAX_CORE if COMPCALL is not None else 0


def _c_kind(t: tuple[Any, ...]) -> str:
    """How the C callback reads a parameter hostflat reads (the same reading)."""
    if t[0] in ("string", "enum"):
        return str(t[0])  # an enum's case names are kept by the C callback, not made anew
    return "bytes" if t[0] == "list" else str(t[0])


def _add_func(inst: cm.LinkerInstance, name: str, entry: _Bound) -> None:
    if COMPCALL is not None and entry.c_kinds is not None:
        # The C callback (sandbox/_compcall.c): its env is the HostCall itself, kept here
        # until wasmtime's finalizer lets it go.
        def refuse(exc: Any) -> int:
            if not isinstance(exc, Exception):
                exc = RuntimeError(f"{type(exc).__name__}: {exc}")
            return _refuse(entry, exc)

        def lower(answer: Any, results: int) -> None:
            assert entry.result is not None
            entry.result.lower(answer, _VAL.from_address(results))

        host = COMPCALL.HostCall(entry.impl, entry.state, entry.c_kinds, entry.c_result,
                                 refuse, lower)
        key = id(host)
        _HOSTS[key] = host
        _BOUND[key] = entry
        callback = _C_CALLBACK
    else:
        key = next(_NEXT)
        _BOUND[key] = entry
        callback = _callback if entry.flat is None else _FLAT
    try:
        linker_instance_add_func(inst, name, callback, key, _finalize)
    except BaseException:
        _BOUND.pop(key, None)
        _HOSTS.pop(key, None)
        raise


def _lift(codec: Codec, c: Any) -> Any:
    return lift_bytes(c) if codec.wit == "list<u8>" else codec.lift(c)


@CAPI.wasmtime_component_func_callback_t  # type: ignore[untyped-decorator]
def _callback(env: int, _context: Any, _ty: Any, args: Any, nargs: int, results: Any,
              nresults: int) -> int:
    entry = _BOUND[env or 0]
    try:
        values = [_lift(codec, args[i]) for i, codec in enumerate(entry.params)]
        if entry.timed:
            values.insert(0, _CALL.deadline)
        answer = entry.impl(entry.state, *values)
        if entry.result is not None:
            entry.result.lower(answer, results[0])
    except Exception as exc:
        return _refuse(entry, exc)
    return 0


def _refuse(entry: _Bound, exc: Exception) -> int:
    # The words of core modules' host functions (sandbox.hostfunc): a HostTrap is a refusal
    # in its own words, anything else names its type.
    text = (f"host function {entry.label}: {exc}" if isinstance(exc, HostTrap) else
            f"host function {entry.label} failed: {type(exc).__name__}: {exc}")
    _CALL.refusal = text
    return error_raw(text)


# The same C callback with its pointers as plain integers (ctypes makes no pointer objects
# for them), for the functions hostflat reads: wasmtime gets it as the callback type
# wasmtime-py declares, at the same address.
@CFUNCTYPE(c_size_t, c_void_p, c_void_p, c_void_p, c_void_p, c_size_t,  # type: ignore[untyped-decorator]
           c_void_p, c_size_t)
def _flat_callback(env: int | None, _context: int | None, _ty: int | None, args: int | None,
                   _nargs: int, results: int | None, _nresults: int) -> int:
    entry = _BOUND[env or 0]
    try:
        values = entry.flat(args or 0)  # type: ignore[misc]
        if entry.timed:
            values.insert(0, _CALL.deadline)
        answer = entry.impl(entry.state, *values)
        result = entry.result
        if result is not None:
            write = entry.write
            if write is None or not write(answer, results or 0):
                result.lower(answer, _VAL.from_address(results or 0))
    except Exception as exc:
        return _refuse(entry, exc)
    return 0


_VAL = CAPI.wasmtime_component_val_t
_FLAT = CAPI.wasmtime_component_func_callback_t(
    ctypes.cast(_flat_callback, c_void_p).value)
#: The C callback of the functions hostflat reads (sandbox/_compcall.c), where it is built.
_C_CALLBACK = CAPI.wasmtime_component_func_callback_t(COMPCALL.HOST_CALLBACK) \
    if COMPCALL is not None else None


@CFUNCTYPE(None, c_void_p)  # type: ignore[untyped-decorator]
def _finalize(env: int | None) -> None:
    # wasmtime drops the linker's definitions (a runtime's closing): forget the binding. At
    # interpreter exit the dict may be gone already; nothing is left to forget then.
    bound, hosts = _BOUND, _HOSTS
    if bound is not None:
        bound.pop(env or 0, None)
    if hosts is not None:
        hosts.pop(env or 0, None)

