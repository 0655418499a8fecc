"""Flat faces for every export the canonical ABI flattens: the one face generator.

:mod:`.rawlift` writes a second lift of an exported core function typed with the canonical
ABI's flat form; this module chooses which functions get one, and its types: every exported
function whose WIT signature holds only what :mod:`.canonabi` lowers and lifts (integers,
floats, bools, chars, strings, lists, records, tuples, variants, enums, flags, options,
results): the face's component type is the core function's own signature
with ``i32`` as ``u32`` and ``i64`` as ``u64`` (parameters past 16 core values are one
pointer, a result past one a return-area pointer, as the ABI says), so calling it costs one
C value per core value and the host does the lowering and lifting itself (.flatcall).
Resources, streams and futures (and value imports the reader does not know) leave the
function on wasmtime's value API. A ``list<u8>`` is a case of a list (one memory copy each
way), an omnicore plugin component's handler ``call`` a function like any other: the runtime
calls its face with bytes in and out, not JSON (.flatcall's ``bytes_out``); it had a byte
face of its own, planned apart, until issue 67.

One case keeps a WIT type on the face: a ``string`` parameter of a function whose parameters
are all scalars and strings (nothing spilled to memory) stays a ``string`` (its core type
``"string"``, two core values in the function's signature). wasmtime lowers it within the
face's own call, through the lift's ``realloc``: the host hands it the UTF-8 bytes as one C
value. Lowered by the host, each string was a call of the realloc face of its own before the
export's (a component call costs more than the copy it makes room for: a 1 KiB string round
trip was two component calls, 0.14 of wasmtime-py's call where every other row was under
0.10). Strings inside other values keep the host's lowering: the order of the guest's
``realloc`` calls stays the canonical ABI's.

wasmtime validates each face against the core function's type when
the component compiles, and the loader checks the planned types against wasmtime's own
reflection of the export (compiled.py), so a misread signature never runs.
"""

from __future__ import annotations

from typing import Any

from omnicore.sandbox.component import rawlift
from omnicore.sandbox.component.canonabi import MAX_FLAT_PARAMS, MAX_FLAT_RESULTS, Ty, flatten
from omnicore.sandbox.component.rawlift import RAW_PREFIX, Planned, RawForm, Reader

__all__ = ["FACES_VERSION", "face_params", "plan", "signature"]

#: Which faces :func:`plan` gives, in the name of a cached compile (compiled.py): a compile
#: holds the faces of the planner that made it, and a planner that names or chooses them
#: differently must not find them (the export would quietly keep the value API).
FACES_VERSION = 4

_PRIMS = {0x7F: "bool", 0x7E: "s8", 0x7D: "u8", 0x7C: "s16", 0x7B: "u16", 0x7A: "s32",
          0x79: "u32", 0x78: "s64", 0x77: "u64", 0x76: "f32", 0x75: "f64", 0x74: "char",
          0x73: "string"}


class _Unsupported(Exception):
    """A type the host's canonical ABI does not carry: the function keeps the value API."""


def _resolve(reader: Reader, vt: Any, depth: int = 0) -> Ty:
    if depth > 64:
        raise _Unsupported("nesting")
    if isinstance(vt, int):
        if vt not in _PRIMS:
            raise _Unsupported(f"primitive {vt:#x}")
        return (_PRIMS[vt],)
    kind = reader.kinds.get(vt[1])
    if kind is None:
        raise _Unsupported("type")
    tag = kind[0]
    d = depth + 1
    if tag == "prim":
        return _resolve(reader, kind[1], d)
    if tag in ("list", "option"):
        return (tag, _resolve(reader, kind[1], d))
    if tag == "record":
        return (tag, kind[1], tuple(_resolve(reader, t, d) for t in kind[2]))
    if tag == "variant":
        return (tag, kind[1], tuple(None if t is None else _resolve(reader, t, d)
                                    for t in kind[2]))
    if tag == "tuple":
        return (tag, tuple(_resolve(reader, t, d) for t in kind[1]))
    if tag in ("flags", "enum"):
        return (tag, kind[1])
    if tag == "result":
        return (tag, *(None if t is None else _resolve(reader, t, d) for t in kind[1:]))
    raise _Unsupported(tag)


def _has_memory(t: Ty | None) -> bool:
    """Whether a value of ``t`` may point into memory (a string or list inside)."""
    if t is None:
        return False
    k = t[0]
    if k in ("string", "list"):
        return True
    if k in ("record", "variant"):
        return any(_has_memory(f) for f in t[2])
    if k == "tuple":
        return any(_has_memory(f) for f in t[1])
    if k == "option":
        return _has_memory(t[1])
    if k == "result":
        return _has_memory(t[1]) or _has_memory(t[2])
    return False


def _has_string(t: Ty | None) -> bool:
    return t is not None and "'string'" in repr(t)


#: WIT types a face's parameter may keep (.flatcall's plain signatures: scalars and strings).
_PLAIN = frozenset((*_PRIMS.values(),))


def signature(params: tuple[Ty, ...], result: Ty | None) -> tuple[tuple[str, ...],
                                                                  tuple[str, ...]]:
    """The core signature the canonical ABI gives ``func(params) -> result``."""
    flat = tuple(c for p in params for c in flatten(p))
    core_params = ("i32",) if len(flat) > MAX_FLAT_PARAMS else flat
    core_result = flatten(result) if result is not None else ()
    if len(core_result) > MAX_FLAT_RESULTS:
        core_result = ("i32",)
    return core_params, core_result


def face_params(params: tuple[Ty, ...], result: Ty | None,
                core_params: tuple[str, ...]) -> tuple[str, ...]:
    """The face's parameters: ``core_params``, but each ``string`` parameter of a plain
    signature (every parameter and the result a scalar or a string, nothing spilled) kept a
    ``"string"`` (wasmtime lowers it in the face's call: see the module's docstring)."""
    flat = sum(len(flatten(p)) for p in params)
    if flat > MAX_FLAT_PARAMS or not all(len(p) == 1 and p[0] in _PLAIN for p in params) \
            or (result is not None and not (len(result) == 1 and result[0] in _PLAIN)) \
            or ("string",) not in params:
        return core_params
    return tuple(c for p in params for c in (("string",) if p == ("string",) else flatten(p)))


def plan(wasm: bytes) -> Planned:
    """A canonical face for every function the host's canonical ABI carries, by function name
    (``greet``, ``ns:pkg/iface#f``); empty when none can."""
    planned: Planned = {}
    reader = rawlift.read(wasm)
    if reader is None:
        return planned
    for n, (name, lift) in enumerate(rawlift.named_lifts(reader)):
        fty = reader.kinds.get(lift.type)
        if fty is None or fty[0] != "func":
            continue
        try:
            params = tuple(_resolve(reader, p) for p in fty[1])
            result = _resolve(reader, fty[2]) if fty[2] is not None else None
        except _Unsupported:
            continue
        core_params, core_result = signature(params, result)
        # Memory is used by anything pointing into it and by a spilled parameter list or
        # return area; realloc by what the host must place in it.
        spilled = len(core_params) < sum(len(flatten(p)) for p in params)
        returned = result is not None and len(flatten(result)) > MAX_FLAT_RESULTS
        needs_realloc = spilled or any(_has_memory(p) for p in params)
        needs_memory = needs_realloc or returned or _has_memory(result)
        if (needs_memory and lift.memory is None) or (needs_realloc and lift.realloc is None):
            continue
        if not lift.utf8 and (any(_has_string(p) for p in params) or _has_string(result)):
            continue
        face = f"{RAW_PREFIX}canon-{rawlift.label(n)}"
        post = f"{face}-post" if lift.post_return is not None else None
        planned[name] = (RawForm(face, f"{face}-realloc" if needs_realloc else None, post,
                                 face_params(params, result, core_params),
                                 core_result, params, result), lift)
    return planned
