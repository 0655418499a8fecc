"""User host functions for ``extism:host/user``, in the Extism Python SDK's shape.

An app moving from the Extism Python SDK keeps its host functions: the same decorator
(:func:`host_fn`, type-inferred or with an explicit signature) and the same callback
``f(current_plugin, inputs, outputs, *user_data)`` with a :class:`CurrentPlugin` offering
``memory``, ``alloc``, ``free``, ``memory_at_offset``, ``input_bytes``/``input_string``,
``return_bytes``/``return_string``. Functions made with ``extism.host_fn`` itself are
accepted too (see :func:`as_user_function`).
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol

__all__ = ["CurrentPlugin", "Memory", "UserFunction", "Val", "ValType", "as_user_function",
           "host_fn"]

DEFAULT_NAMESPACE = "extism:host/user"


class ValType(IntEnum):
    """Wasm value types, numbered as in the Extism SDK (``PTR`` is an ``I64`` handle)."""

    I32 = 0
    I64 = 1
    F32 = 2
    F64 = 3
    PTR = 1


_KIND = {ValType.I32: "i32", ValType.I64: "i64", ValType.F32: "f32", ValType.F64: "f64"}


class Val:
    """One argument or result slot; a callback sets ``value`` of its output slots."""

    __slots__ = ("t", "value")

    def __init__(self, t: ValType, v: Any) -> None:
        self.t = t
        self.value = v

    def __repr__(self) -> str:
        return f"Val({self.t!r}, {self.value!r})"


@dataclass(frozen=True, slots=True)
class Memory:
    """A block of kernel memory: ``offset`` (the handle) and ``length``."""

    offset: int
    length: int

    def __len__(self) -> int:
        return self.length


class Kernel(Protocol):
    """What a user function may do to the calling instance's kernel (one instance, one call)."""

    def kernel_alloc(self, n: int) -> int: ...
    def kernel_free(self, handle: int) -> None: ...
    def kernel_length(self, handle: int) -> int: ...
    def kernel_view(self) -> memoryview: ...


class CurrentPlugin:
    """The calling plugin, as a user host function sees it (the Extism SDK's interface)."""

    __slots__ = ("_kernel",)

    def __init__(self, kernel: Kernel) -> None:
        self._kernel = kernel

    def memory(self, mem: Memory) -> memoryview:
        """A writable view of the block's bytes (valid during this host function call)."""
        view = self._kernel.kernel_view()
        if mem.offset < 0 or mem.offset + mem.length > len(view):
            raise ValueError(f"memory block {mem.offset}+{mem.length} is outside kernel memory")
        return view[mem.offset:mem.offset + mem.length]

    def alloc(self, size: int) -> Memory:
        """Allocate ``size`` bytes of kernel memory; MemoryError when the limit is reached."""
        offset = self._kernel.kernel_alloc(size)
        if offset == 0 and size:
            raise MemoryError(f"the Extism kernel could not allocate {size} bytes")
        return Memory(offset, size)

    def free(self, mem: Memory) -> None:
        """Free a block (a handle that is not a live block is ignored)."""
        self._kernel.kernel_free(mem.offset)

    def memory_at_offset(self, offs: int | Val) -> Memory:
        """The block whose handle is ``offs`` (length 0 when it is not a live block)."""
        offset = int(offs.value if isinstance(offs, Val) else offs)
        return Memory(offset, self._kernel.kernel_length(offset))

    def input_buffer(self, input: Val) -> memoryview:
        return self.memory(self.memory_at_offset(input))

    def input_bytes(self, input: Val) -> bytes:
        """The bytes of the block a handle argument names."""
        return bytes(self.input_buffer(input))

    def input_string(self, input: Val) -> str:
        """The UTF-8 text of the block a handle argument names."""
        return self.input_bytes(input).decode()

    def return_bytes(self, output: Val, b: bytes) -> None:
        """Place ``b`` in a new block and make ``output`` its handle."""
        mem = self.alloc(len(b))
        if b:
            self.memory(mem)[:] = b
        output.value = mem.offset

    def return_string(self, output: Val, s: str) -> None:
        self.return_bytes(output, s.encode())

    def host_context(self) -> None:
        """Always None: omnicore calls carry no per-call host context."""
        return None


Callback = Callable[..., None]


@dataclass(frozen=True)
class UserFunction:
    """A host function an embedder provides to Extism plugins."""

    name: str
    params: tuple[ValType, ...]
    results: tuple[ValType, ...]
    callback: Callback
    namespace: str = DEFAULT_NAMESPACE
    user_data: tuple[Any, ...] = ()

    def __post_init__(self) -> None:
        if len(self.results) > 1 or any(r in (ValType.F32, ValType.F64) for r in self.results):
            raise ValueError(f"host function {self.namespace}.{self.name}: omnicore supports "
                             "no result or one i32/i64 result")

    @property
    def wasm_type(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return (tuple(_KIND[ValType(p)] for p in self.params),
                tuple(_KIND[ValType(r)] for r in self.results))


def _infer(func: Callable[..., Any]) -> tuple[list[ValType], list[ValType], Callback]:
    hints = typing.get_type_hints(func)
    ret = hints.pop("return", None)
    names = list(hints)
    takes_plugin = bool(names) and hints[names[0]] is CurrentPlugin
    if takes_plugin:
        names = names[1:]
    readers: list[Callable[[CurrentPlugin, Val], Any]] = []
    params: list[ValType] = []
    for n in names:
        t = hints[n]
        if t in (str, bytes):
            params.append(ValType.I64)
            readers.append(CurrentPlugin.input_string if t is str else CurrentPlugin.input_bytes)
        elif t in (int, float, bool):
            params.append({int: ValType.I64, float: ValType.F64, bool: ValType.I32}[t])
            readers.append(lambda _p, slot: slot.value)
        else:
            raise TypeError(f"host function {func.__name__}: cannot infer a wasm type for "
                            f"argument {n!r} ({t}); use str, bytes, int, float or bool")
    if ret is None or ret is type(None):
        results: list[ValType] = []
    elif ret in (str, bytes, int):
        results = [ValType.I64]
    elif ret is bool:
        results = [ValType.I32]
    else:
        raise TypeError(f"host function {func.__name__}: cannot infer a wasm type for its "
                        f"result ({ret}); use str, bytes, int or bool")

    def callback(plugin: CurrentPlugin, inputs: list[Val], outputs: list[Val],
                 *user_data: Any) -> None:
        args = [plugin] if takes_plugin else []
        args += [read(plugin, slot) for read, slot in zip(readers, inputs, strict=False)]
        value = func(*args, *user_data)
        if not outputs:
            return
        # As the Extism SDK: text and bytes (and ints) go to a new block, bool stays a value.
        if ret is str:
            plugin.return_string(outputs[0], value)
        elif ret is bytes:
            plugin.return_bytes(outputs[0], value)
        elif ret is int:
            plugin.return_bytes(outputs[0], int(value).to_bytes(8, "little", signed=True))
        else:
            outputs[0].value = int(bool(value))

    return params, results, callback


def host_fn(name: str | None = None, namespace: str | None = None,
            signature: tuple[Sequence[ValType], Sequence[ValType]] | None = None,
            user_data: Sequence[Any] | bytes | None = None
            ) -> Callable[[Callable[..., Any]], UserFunction]:
    """Decorate a function as a user host function (like ``extism.host_fn``).

    Without ``signature`` the wasm types are inferred from annotations (``str``/``bytes``
    arguments and results are kernel handles); with it, the function is a raw callback
    ``f(current_plugin, inputs, outputs, *user_data)``.
    """
    data: tuple[Any, ...] = ((user_data,) if isinstance(user_data, bytes)
                             else tuple(user_data or ()))

    def outer(func: Callable[..., Any]) -> UserFunction:
        if signature is None:
            params, results, callback = _infer(func)
        else:
            params, results, callback = list(signature[0]), list(signature[1]), func
        return UserFunction(name or func.__name__, tuple(ValType(p) for p in params),
                            tuple(ValType(r) for r in results), callback,
                            namespace or DEFAULT_NAMESPACE, data)

    return outer


def as_user_function(fn: Any) -> UserFunction:
    """A :class:`UserFunction`, or a function made with the Extism SDK's ``host_fn``."""
    if isinstance(fn, UserFunction):
        return fn
    if all(hasattr(fn, a) for a in ("name", "namespace", "args", "returns", "func")):
        data: tuple[Any, ...] = ()
        raw = getattr(fn, "user_data", None)
        from extism import extism as sdk  # only reached with an object the SDK made

        if raw is not None and raw != sdk._ffi.NULL:
            # The SDK appends its registry index to the user data; its callback drops it.
            data = tuple(sdk._ffi.from_handle(raw))[:-1]
        return UserFunction(fn.name, tuple(ValType(a) for a in fn.args),
                            tuple(ValType(r) for r in fn.returns), fn.func,
                            fn.namespace or DEFAULT_NAMESPACE, data)
    raise TypeError(f"not a host function: {fn!r} (use omnicore.extism.host_fn or "
                    "extism.host_fn)")
