"""What a component imports and exports, read from its type: the world ``inspect`` shows and
the call signatures :mod:`.runtime` checks arguments against.

A function exported at the top level is named by its WIT name (``greet``); one inside an
exported interface by ``namespace:package/interface#function`` (specs/components.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import wasmtime
from wasmtime import component as cm

from omnicore.sandbox.component.rawlift import RAW_PREFIX
from omnicore.sandbox.component.values import Codec, Unsupported, codec_for

__all__ = ["Function", "World", "read_function", "read_world", "wasi_interface_supplied"]

#: The WASI 0.2 packages ``Linker.add_wasip2`` supplies. wasi:filesystem reaches only the
#: ``fs`` grant's directories (.files), and every socket address is refused (wasmtime's
#: default check), so sockets answer with WASI's own errors.
_WASIP2_SUPPLIED = ("wasi:cli/", "wasi:clocks/", "wasi:filesystem/", "wasi:io/",
                    "wasi:random/", "wasi:sockets/")


def wasi_interface_supplied(name: str) -> bool:
    """Whether the host links WASI 0.2 interface ``name`` (``wasi:cli/stdout@0.2.3``)."""
    return name.startswith(_WASIP2_SUPPLIED) and "@0.2." in name


@dataclass(frozen=True, slots=True)
class Function:
    """One exported function: its call name, path of export names, and JSON codecs."""

    name: str
    #: Export names from the root: ``("greet",)`` or ``("ns:pkg/iface", "fn")``.
    path: tuple[str, ...]
    params: tuple[tuple[str, Codec], ...]
    result: Codec | None
    #: Why it cannot be called with JSON (a resource in its signature), or None.
    unsupported: str | None
    #: ``func(name: string) -> string`` (best effort for unsupported types).
    signature: str


@dataclass(frozen=True, slots=True)
class World:
    """A component's imports (names, in order) and callable exports."""

    imports: tuple[str, ...]
    functions: dict[str, Function]
    #: ``export greet: func(name: string) -> string;`` lines, then ``import ...;`` lines.
    lines: tuple[str, ...]


def read_function(name: str, path: tuple[str, ...], fty: cm.FuncType) -> Function:
    """The function ``name`` of type ``fty``: its codecs and signature (``unsupported`` says
    why JSON cannot carry it, if so)."""
    try:
        params = tuple((pname, codec_for(t)) for pname, t in fty.params)
        rty = fty.result
        result = codec_for(rty) if rty is not None else None
    except Unsupported as exc:
        return Function(name, path, (), None, str(exc), f"func(...)  # unsupported: {exc}")
    sig = "func(" + ", ".join(f"{p}: {c.wit}" for p, c in params) + ")"
    if result is not None:
        sig += f" -> {result.wit}"
    return Function(name, path, params, result, None, sig)


def _item(ext: Any) -> Any:
    return ext.ty


def read_world(component: cm.Component, engine: wasmtime.Engine) -> World:
    """Read ``component``'s imports and exported functions (nested one interface deep)."""
    ctype = component.type
    imports = tuple(ctype.imports(engine))
    functions: dict[str, Function] = {}
    lines: list[str] = []
    for name, ext in ctype.exports(engine).items():
        if name.startswith(RAW_PREFIX):  # the host's own flat faces (.rawlift)
            continue
        item = _item(ext)
        if isinstance(item, cm.FuncType):
            fn = read_function(name, (name,), item)
            functions[name] = fn
            lines.append(f"export {name}: {fn.signature};")
        elif isinstance(item, cm.ComponentInstanceType):
            lines.append(f"export {name} {{")
            for fname, fext in item.exports(engine).items():
                fitem = _item(fext)
                if isinstance(fitem, cm.FuncType):
                    fn = read_function(f"{name}#{fname}", (name, fname), fitem)
                    functions[fn.name] = fn
                    lines.append(f"  {fname}: {fn.signature};")
                else:
                    lines.append(f"  {fname}: {type(fitem).__name__};  # not callable")
            lines.append("}")
        else:
            lines.append(f"export {name}: {type(item).__name__};  # not callable")
    for name in imports:
        lines.append(f"import {name};")
    return World(imports, functions, tuple(lines))
