"""Calling an export through its canonical face (.canonplan): JSON in, the canonical ABI
done by :mod:`.canonabi`, one C value per core value, JSON out.

A :class:`FlatCall` is compiled once per export (shared by every instance); a :class:`Bound`
holds what one instance needs for it (its face functions, its memory view, preallocated C
values), so a call allocates nothing but the Python values it returns. Failures come back
as :class:`_CallFailed` (wasmtime's error: a trap, the deadline, a host function's refusal)
or :class:`.canonabi._CanonTrap` (a value the guest handed back is not of its type); the
runtime turns both into the verdict every path gives.

Where the C component call path is built (``sandbox/_compcall.c``: :data:`COMPCALL`), a
:class:`Bound` also holds its C ``Face``: the deadline's arming, the face's call, its
post-return and every ``realloc`` are then one C call each; an export whose parameters
and result are all WIT scalars is lowered and lifted in C too (no Python lowerer, no struct),
and every export takes its call's JSON and answers JSON in C (``call_json``): scalars and
strings by the Face itself, every other signature by its :attr:`FlatCall.plan`
(sandbox/_compvalue.c, built from canonabi's layouts: canonabi's lowering and lifting, traps
and words, done in C). JSON that is not plainly the arguments is handed back, and runs here.
Without the extension (or with ``OMNICORE_CALLPATH=python``) every step runs here through
ctypes.
"""

from __future__ import annotations

import ctypes
import json
import re
import struct
from ctypes import byref, c_void_p
from typing import Any

from omnicore.core import jsoncodec
from omnicore.sandbox import _wasmtime as engine_api
from omnicore.sandbox import native
from omnicore.sandbox._wasmtime import CAPI, COMPONENT_KINDS
from omnicore.sandbox.component.canonabi import (
    MAX_FLAT_PARAMS,
    MAX_FLAT_RESULTS,
    Cx,
    Ty,
    _CanonTrap,
    _case_names,
    _cases,
    _disc_size,
    _members,
    _offsets,
    _payload_offset,
    _text,
    align,
    bytes_lists,
    flatten,
    lifter,
    loader,
    lowerer,
    size,
    storer,
)
from omnicore.sandbox.component.rawlift import RawForm

__all__ = ["COMPCALL", "Bound", "FlatCall", "answer_json", "uses_memory"]

#: A core value as the face carries it: (the C value's kind, its union field); a string the
#: face keeps (.canonplan) is a ``wasm_name_t`` (size, data), bytes wasmtime lowers itself.
_SLOT = {"i32": ("U32", "u32"), "i64": ("U64", "u64"), "f32": ("F32", "f32"),
         "f64": ("F64", "f64"), "string": ("STRING", "string")}
#: Its struct code, and the C value's layout: values are written and read as bytes, one
#: ``pack_into`` per call (a ctypes field access per value costs more than the C call).
_CODE = {"i32": "I", "i64": "Q", "f32": "f", "f64": "d", "string": "QQ"}
_SIZE = ctypes.sizeof(CAPI.wasmtime_component_val_t)
_OF = CAPI.wasmtime_component_val_t.of.offset
_WIDTH = {"I": 4, "Q": 8, "f": 4, "d": 8, "QQ": 16}
_STRING_KIND = COMPONENT_KINDS["STRING"]


def _vals_struct(core: tuple[str, ...]) -> struct.Struct:
    """Each C value's kind byte and payload, in order (the kinds interleaved)."""
    fmt = "".join(f"B{_OF - 1}x{_CODE[c]}{_SIZE - _OF - _WIDTH[_CODE[c]]}x" for c in core)
    return struct.Struct("<" + fmt)


# An internal signal, private on purpose: it never leaves the component sandbox (the runtime
# turns it into the verdict every path gives), so it stays outside omnicore.errors' tree.
class _CallFailed(Exception):
    """wasmtime's call answered an error (``error``: the ``wasmtime_error_t *``, owned)."""

    def __init__(self, error: Any) -> None:
        super().__init__("call failed")
        self.error = error


#: Where orjson may have written a float otherwise than json (an exponent, or a fraction
#: below 1e-4 in full): matches every such float, and some strings (json writes those).
_EXPONENT = re.compile(rb"[0-9][eE]|0\.0000")


def answer_json(value: Any, floats: bool = True) -> bytes:
    """The JSON of a component call's answer, the one writer of the Python lanes (the C face
    writes the same bytes: tests/sandbox/test_component_canon.py): ``json.dumps``'s compact
    form without ASCII escapes, through orjson where it writes the same (core/jsoncodec). Where
    orjson may write a float its own way (1e16 and 0.00001, json 1e+16 and 1e-05) it is json's
    words; ``floats`` False: the answer's type holds no float, nothing to look for."""
    out = jsoncodec.dumps(value)
    if floats and _EXPONENT.search(out):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    return out

#: WIT types the C face lowers and lifts itself (its ``call``).
_SCALARS = frozenset(("bool", "s8", "u8", "s16", "u16", "s32", "u32", "s64", "u64", "f32",
                      "f64", "char"))
#: A core value's code in the C face's signature (``s``: a string the face keeps).
_CORE = {"i32": "i", "i64": "q", "f32": "f", "f64": "d", "string": "s"}


def _native_compcall() -> Any:
    """The C component call path (sandbox/_compcall.c) bound to this libwasmtime, or None
    (the ctypes path below runs): as sandbox.native chooses for the core call path."""
    ext = native.extension("_compcall", "C component call path", engine=True)
    if ext is None:
        return None
    if (ext.VAL_SIZE, ext.VAL_OF) != (_SIZE, _OF):
        raise RuntimeError("the C component call path was built for another layout of "
                           "wasmtime_component_val_t: rebuild it (scripts/dev setup)")

    # As _wasmtime.hand_over reads them for the core call path: names _wasmtime checked at
    # import (NAMES: "components", and the core's set_epoch_deadline; native.extension
    # refused us above if one was missing).
    address = engine_api.c_function
    ext.bind(address("wasmtime_component_func_call"),
             address("wasmtime_component_func_post_return"),
             address("wasmtime_context_set_epoch_deadline"),
             tuple(COMPONENT_KINDS[k] for k in ("U32", "U64", "F32", "F64", "BOOL", "STRING")),
             _CallFailed, _CanonTrap, _text)
    return ext


#: The C component call path (sandbox/_compcall.c), or None where the ctypes path runs.
COMPCALL: Any = _native_compcall()


def _address(ref: Any) -> int:
    """The address of what a ``byref`` (``component_func``, ``context_of``) points at."""
    if isinstance(ref, ctypes._Pointer):
        return int(ctypes.cast(ref, c_void_p).value or 0)
    return ctypes.addressof(ref._obj) + getattr(ref, "_off", 0) if ref is not None else 0


def _names(names: tuple[str, ...]) -> tuple[bytes, ...]:
    """Names as the JSON strings the C plan matches and writes."""
    return tuple(json.dumps(n, ensure_ascii=False).encode() for n in names)


def _node(t: Ty) -> tuple[Any, ...]:
    """``t`` as the C plan's node (sandbox/_compvalue.c): (kind, size, align, flat, subs,
    names as JSON strings, member offsets, payload offset, discriminant bytes)."""
    k = t[0]
    flat = "".join(_CORE[c] for c in flatten(t))
    head = (k, size(t), align(t), flat)
    if k in ("record", "tuple"):
        members = _members(t)
        names = tuple(t[1]) if k == "record" else ()
        return (*head, tuple(_node(m) for m in members),
                _names(names), _offsets(members), 0, 0)
    if k == "list":
        return (*head, (_node(t[1]),), (), (), 0, 0)
    if k == "flags":
        return (*head, (), _names(t[1]), (), 0, 0)
    if k in ("variant", "enum", "option", "result"):
        cases = _cases(t)
        subs = () if k == "enum" else tuple(None if c is None else _node(c) for c in cases)
        return (*head, subs, _names(_case_names(t)), (),
                _payload_offset(t), _disc_size(len(cases)))
    return (*head, (), (), (), 0, 0)  # a scalar or a string


def _own_string(v: Any, out: list[Any], _cx: Cx) -> None:
    """A string parameter the face keeps: its UTF-8 bytes (the value was checked: no lone
    surrogates), which wasmtime lowers in the face's call."""
    out.append(v.encode())


def _bytes_address(raw: bytes) -> int:
    """Where ``raw``'s bytes are (valid while ``raw`` is)."""
    return int(ctypes.cast(ctypes.c_char_p(raw), c_void_p).value or 0)


def uses_memory(form: RawForm) -> bool:
    """Whether calling ``form`` touches guest memory (then its instance's one memory must be
    known)."""
    return form.realloc is not None or "'string'" in repr(form.result_type) \
        or "'list'" in repr(form.result_type) or (
            form.result_type is not None and len(flatten(form.result_type)) > MAX_FLAT_RESULTS)


class FlatCall:
    """One export's canonical lowering and lifting, compiled from its face's form."""

    def __init__(self, form: RawForm, bytes_out: bool = False) -> None:
        self.form = form
        params = form.types
        result = form.result_type
        #: ``bytes_out``: every ``list<u8>`` taken and answered as Python bytes, not JSON
        #: (an omnicore plugin's handler ``call``: .canonabi's ``bytes_lists``); no C plan.
        self.bytes_out = bytes_out
        if bytes_out:
            params = tuple(bytes_lists(p) for p in params)
            result = bytes_lists(result)
        self.spilled = sum(len(flatten(p)) for p in params) > MAX_FLAT_PARAMS
        if self.spilled:
            args = ("tuple", params)
            self._args_align, self._args_size = align(args), size(args)
            self._store_args = storer(args)
        # A string the face keeps is its UTF-8 bytes, which wasmtime lowers (.canonplan).
        self.kept = "string" in form.core_params
        self._lowers = tuple(_own_string if self.kept and p == ("string",) else lowerer(p)
                             for p in params)
        self.returned = result is not None and len(flatten(result)) > MAX_FLAT_RESULTS
        if result is not None:
            if self.returned:
                self._load = loader(result)
                self._ret_align, self._ret_size = align(result), size(result)
            else:
                self._lift = lifter(result)
        self.params = tuple(_SLOT[c] for c in form.core_params)
        self.result = _SLOT[form.core_result[0]][1] if form.core_result else None
        self._pack = _vals_struct(form.core_params).pack_into
        self._kinds = tuple(COMPONENT_KINDS[k] for k, _f in self.params)
        self._unpack = struct.Struct("<" + _CODE[form.core_result[0]]).unpack_from \
            if form.core_result else None
        # orjson writes some floats its own way (1e16 and 0.00001, json 1e+16 and 1e-05):
        # an answer with floats where orjson wrote those takes json's words, what the value
        # API's path writes (every other float both write alike: repr's shortest digits).
        self.floats = "'f32'" in repr(result) or "'f64'" in repr(result)
        #: Every parameter and the result a WIT scalar, each one core value: the C face
        #: lowers and lifts them itself (WIT names, for it).
        self.scalars: tuple[tuple[str, ...], str | None] | None = None
        if not self.spilled and not self.returned \
                and all(len(p) == 1 and p[0] in _SCALARS for p in params) \
                and (result is None or (len(result) == 1 and result[0] in _SCALARS)):
            self.scalars = (tuple(p[0] for p in params),
                            None if result is None else result[0])
        #: Every parameter and the result a WIT scalar or a string: the C face takes the
        #: call's JSON and answers JSON itself (call_json), strings through memory.
        plain = (*_SCALARS, "string")
        self.plain: tuple[tuple[str, ...], str | None] | None = None
        if not self.spilled and all(len(p) == 1 and p[0] in plain for p in params) \
                and (result is None or (len(result) == 1 and result[0] in plain)):
            self.plain = (tuple(p[0] for p in params), None if result is None else result[0])
        #: Every other signature: the C face's plan (sandbox/_compvalue.c), which takes the
        #: call's JSON and answers JSON itself (call_json), every WIT type lowered and lifted
        #: in C; built once per export, shared by its instances' faces.
        self.plan: Any = None
        if COMPCALL is not None and self.plain is None and not bytes_out:
            try:
                self.plan = COMPCALL.plan((_node(("tuple", params)),
                                           None if result is None else _node(result),
                                           self.spilled, uses_memory(form)))
            except ValueError:  # a layout the plan refuses (flags past 256): Python's
                self.plan = None

    def dumps(self, value: Any) -> bytes:
        return answer_json(value, self.floats)

    def _lower(self, args: list[Any], cx: Cx) -> list[Any]:
        """The core values of the checked JSON ``args`` (spilled to memory past the flat
        limit, through the guest's realloc)."""
        flat: list[Any] = []
        if self.spilled:
            ptr = cx.realloc(self._args_align, self._args_size)
            self._store_args(args, ptr, cx)
            flat.append(ptr)
        else:
            for lower, value in zip(self._lowers, args, strict=True):
                lower(value, flat, cx)
        return flat

    def _answer(self, core: Any, cx: Cx) -> Any:
        """The JSON value of the result from the core result ``core`` (the return area's
        address when it is returned through memory); None without a result."""
        if self.form.result_type is None:
            return None
        if not self.returned:
            return self._lift(iter((core,)), cx)
        if core % self._ret_align:
            raise _CanonTrap("return pointer not aligned")
        cx.span(core, self._ret_size, "return pointer")
        return self._load(core, cx)

    def call_c(self, bound: Bound, args: list[Any], epoch: int | None) -> Any:
        """:meth:`call` through the C face, which also arms the deadline (``epoch``: as
        ``Face.arm`` takes it; None: the caller armed it)."""
        c = bound.c
        if self.scalars is not None:
            return c.call(args, epoch)
        c.arm(epoch)  # before the lowering: realloc runs under this call's deadline
        cx = bound.cx
        flat = self._lower(args, cx)
        core = c.call_core(flat, None)
        answer = self._answer(core, cx)
        c.post_core()
        return answer

    def call(self, bound: Bound, args: list[Any]) -> Any:
        """The export's JSON result for the checked JSON ``args``; _CallFailed, _CanonTrap."""
        cx = bound.cx
        flat = self._lower(args, cx)
        if self.kept:  # each kept string's bytes (alive in flat through the call) by address
            values: list[Any] = []
            for kind, value in zip(self._kinds, flat, strict=True):
                if kind == _STRING_KIND:
                    values += (kind, len(value), _bytes_address(value))
                else:
                    values += (kind, value)
            self._pack(bound.view, 0, *values)
        else:
            slots = bound.slots
            slots[1::2] = flat
            self._pack(bound.view, 0, *slots)
        ctx = bound.ctx
        error = CAPI.wasmtime_component_func_call(bound.face, ctx, bound.params, len(flat),
                                                  bound.out_ref, bound.nout)
        if not error:
            error = CAPI.wasmtime_component_func_post_return(bound.face, ctx)
        if error:
            raise _CallFailed(error)
        unpack = self._unpack
        core = unpack(bound.out_view, _OF)[0] if unpack is not None else None
        answer = self._answer(core, cx)
        if bound.post is not None:
            error = CAPI.wasmtime_component_func_call(
                bound.post, ctx, bound.out_ref, bound.nout, None, 0)
            if not error:
                error = CAPI.wasmtime_component_func_post_return(bound.post, ctx)
            if error:
                raise _CallFailed(error)
        return answer


class Bound:
    """A :class:`FlatCall` on one instance: its face functions and C values."""

    __slots__ = ("c", "ctx", "cx", "face", "nout", "out", "out_ref", "out_view", "params",
                 "post", "realloc", "slots", "view")

    def __init__(self, flat: FlatCall, ctx: Any, face: Any, realloc: Any, post: Any,
                 memory: Any, view: memoryview | None, ticks: int | None = None,
                 clock: Any = None) -> None:
        self.ctx = ctx
        self.face = face
        self.realloc = realloc
        self.post = post
        n = len(flat.params)
        self.params = (CAPI.wasmtime_component_val_t * max(n, 1))()
        self.view = memoryview(self.params).cast("B")
        #: (kind, value) per parameter, for FlatCall's one pack: the values change per call.
        self.slots: list[Any] = [x for k in flat._kinds for x in (k, 0)]
        self.out = CAPI.wasmtime_component_val_t()
        self.out_view = memoryview(self.out).cast("B")
        if flat.result is not None:
            self.out.kind = COMPONENT_KINDS[_SLOT[flat.form.core_result[0]][0]]
        self.out_ref = byref(self.out)
        self.nout = 1 if flat.result is not None else 0
        grow = (CAPI.wasmtime_component_val_t * 4)()
        for c in grow:
            c.kind = COMPONENT_KINDS["U32"]
        at = CAPI.wasmtime_component_val_t()
        at_ref = byref(at)

        def alloc(alignment: int, nbytes: int) -> int:
            # realloc(0, 0, align, size), as the canonical ABI calls it for a new value.
            grow[2].of.u32 = alignment
            grow[3].of.u32 = nbytes
            error = CAPI.wasmtime_component_func_call(realloc, ctx, grow, 4, at_ref, 1)
            if not error:
                error = CAPI.wasmtime_component_func_post_return(realloc, ctx)
            if error:
                raise _CallFailed(error)
            return int(at.of.u32)

        #: The C face (sandbox/_compcall.c), arming deadlines of ``ticks`` from ``clock`` (the
        #: engine's C clock) through the door (sandbox/_deadline.h); None: ctypes.
        self.c: Any = None
        if COMPCALL is not None and ticks is not None and clock is not None:
            plain = flat.plain if flat.plain is not None else (None, None)
            self.c = COMPCALL.Face(
                _address(ctx), _address(face), _address(post), _address(realloc),
                "".join(_CORE[c] for c in flat.form.core_params),
                "".join(_CORE[c] for c in flat.form.core_result), ticks, *plain, memory,
                flat.plan, clock=clock)
        self.cx = Cx(memory, view if view is not None else memoryview(b""),
                     alloc if self.c is None else self.c.alloc)


def memory_view(memory: Any) -> memoryview:
    """A writable view of a host-made linear memory's whole reservation (it never moves)."""
    raw = (ctypes.c_ubyte * memory.capacity).from_address(memory.base)
    return memoryview(raw).cast("B")
