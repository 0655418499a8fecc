"""The one door to wasmtime's private API: every private name omnicore uses, checked at import.

wasmtime-py's public API costs 20-30 µs a call; omnicore's speed comes from wasmtime's C API
(``wasmtime._ffi``: C functions by address, ctypes prototypes, the ``_func``/``_memory``/
``_context`` internals of wasmtime-py's objects) and from its own C extensions, which get C
function addresses. Those names are nobody's promise: a new wasmtime may move, rename or
re-sign any of them. So this module is the only one that imports them
(``tests/sandbox/test_wasmtime.py`` scans the package's syntax trees for any other), resolves
each once here, and hands typed handles to everything else.

At import it compares the installed wasmtime with :data:`PINNED` (pyproject.toml pins the
same version) and looks up every name in :data:`NAMES`, grouped by the path that uses it.
For C functions it also compares the number of arguments with wasmtime-py's own prototype of
the installed version. On any mismatch one warning line (:data:`PROBLEM`) names both versions
and the missing names, and:

* **C extensions** (``_callpath``: the C call path, epoch ticker, instance start and host
  functions; built against the pinned C API) are refused: :func:`omnicore.sandbox.native.extension`
  answers None (``OMNICORE_CALLPATH=auto``) or refuses to start (``native``), and plugins
  run on the Python call path (``sandbox/fastcall.py``, ctypes prototypes from here).
* the **log ring** (``_logring``) uses no engine name and keeps running in C.
* a path whose *own* names are missing has no fallback below it and is refused with a clear
  error, never a crash: a core or Extism plugin (``core``, ``host-functions``, ``extism``)
  fails its load with PluginLoadError naming the names (the handles here raise it when
  called); components (``components``) refuse on import of ``omnicore.sandbox.component``,
  which a component's load reaches first: PluginLoadError; ``sandbox.pooling`` and the Winch
  baseline compiler (``pooling``, ``winch``) refuse the engine: ConfigError.

Moving to a new wasmtime is a change here (and to the pin): specs/security.md "Moving to a
new wasmtime" lists what to re-verify and which tests prove it.
"""

from __future__ import annotations

import ctypes
import logging
import weakref
from collections.abc import Callable, Iterable
from ctypes import c_bool, c_char_p, c_int64, c_size_t, c_uint64, c_void_p
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import wasmtime
from wasmtime import _ffi as ffi
from wasmtime import component as cm
from wasmtime.component._enter import catch_exceptions
from wasmtime.component._types import FuncType, ListType, VariantLikeType

from omnicore.errors import ConfigError, PluginLoadError

__all__ = [
    "CAPI",
    "COMPONENT_KINDS",
    "EXTERN_OF",
    "FOUND",
    "MEMORY_T_SIZE",
    "MISSING",
    "NAMES",
    "NATIVE_OK",
    "PINNED",
    "PROBLEM",
    "ExternT",
    "SharedModule",
    "add_typed_func",
    "address_of",
    "c_function",
    "call_unchecked",
    "caller_context",
    "caller_export_get",
    "component_func",
    "context_of",
    "context_set_wasi",
    "error_from",
    "error_raw",
    "exit_status",
    "fast_byte_lists",
    "func_address",
    "get_fuel",
    "hand_over",
    "instance_export_get",
    "instance_pre_instantiate",
    "linker_define_func_unchecked",
    "linker_instance_add_func",
    "memory_address",
    "memory_data",
    "memory_data_size",
    "refused",
    "require",
    "set_epoch_deadline",
    "set_epoch_deadline_callback",
    "set_fuel",
    "set_memory_creator",
    "set_memory_init_cow",
    "set_pooling",
    "store_context",
    "store_context_address",
    "store_delete",
    "store_limiter",
    "store_new",
    "trap_from",
    "trap_new",
    "use_winch",
    "wasi_raw",
]

_log = logging.getLogger("omnicore.sandbox")

#: The wasmtime every name below was verified against (pyproject.toml pins it exactly).
PINNED = "50.0.1"


def _found_version() -> str:
    # The dist-info folder beside the package names the version: importlib.metadata would
    # cost every process that loads a plugin 20 ms (it imports the email package).
    site = Path(wasmtime.__file__).parents[1]
    for info in site.glob("wasmtime-*.dist-info"):
        return info.name.removeprefix("wasmtime-").removesuffix(".dist-info")
    from importlib import metadata

    try:
        return metadata.version("wasmtime")
    except metadata.PackageNotFoundError:  # pragma: no cover - a vendored copy
        return "unknown"


#: The installed wasmtime.
FOUND = _found_version()

# A name is spelt as checked: ``wasmtime_x`` a C function of the shared library (its
# argument count compared with wasmtime-py's prototype), ``ffi.X`` an attribute of
# wasmtime._ffi (a struct, callback type, constant or helper), ``Class.attr`` /
# ``component.Class.attr`` an internal of wasmtime-py's classes.
_CORE = (
    "wasmtime_func_call_unchecked", "wasmtime_context_set_epoch_deadline",
    "wasmtime_context_set_fuel", "wasmtime_context_get_fuel", "wasmtime_memory_data",
    "wasmtime_memory_data_size", "wasmtime_store_new", "wasmtime_store_context",
    "wasmtime_store_delete", "wasmtime_store_limiter", "wasmtime_context_set_wasi",
    "wasmtime_instance_pre_instantiate", "wasmtime_instance_export_get",
    "wasmtime_module_delete", "Module._delete",
    "wasmtime_error_exit_status", "ffi.wasmtime_val_raw_t", "ffi.wasmtime_func_t",
    "ffi.wasmtime_extern_t", "ffi.wasmtime_instance_t", "ffi.wasmtime_memory_t",
    "ffi.wasmtime_error_t", "ffi.wasm_trap_t", "ffi.wasmtime_error_exit_status",
    "Engine.ptr", "InstancePre.ptr", "WasiConfig._consume", "Trap._from_ptr",
    "WasmtimeError._from_ptr",
)
_HOST_FUNCTIONS = (
    "wasmtime_caller_context", "wasmtime_caller_export_get", "wasmtime_trap_new",
    "wasmtime_linker_define_func_unchecked", "Linker.ptr", "FuncType.ptr",
)
#: What the C extensions get by address (hand_over), beyond the core names.
_C_EXTENSIONS = (
    "wasmtime_engine_increment_epoch", "wasmtime_error_new",
    "wasmtime_store_epoch_deadline_callback",
)
_EXTISM = ("Store._context", "Store.ptr", "Func._func", "Memory._memory")
_COMPONENTS = (
    "ffi.wasmtime_component_val_t", "ffi.wasmtime_component_vallist_t",
    "ffi.wasmtime_component_valrecord_t", "ffi.wasmtime_component_valtuple_t",
    "ffi.wasmtime_component_valflags_t", "ffi.wasmtime_component_func_callback_t",
    "ffi.wasmtime_memory_creator_t", "ffi.wasmtime_new_memory_callback_t",
    "ffi.wasmtime_memory_get_callback_t", "ffi.wasmtime_memory_grow_callback_t",
    "ffi.wasmtime_context_t", "ffi.wasmtime_update_deadline_kind_t", "ffi.str_to_capi",
    "wasmtime_component_val_new", "wasmtime_component_val_delete",
    "wasmtime_component_vallist_new_uninit", "wasmtime_component_valrecord_new_uninit",
    "wasmtime_component_valtuple_new_uninit", "wasmtime_component_valflags_new_uninit",
    "wasmtime_component_func_call", "wasmtime_component_func_post_return",
    "wasmtime_component_linker_instance_add_func", "wasmtime_component_resource_any_drop",
    "wasmtime_store_epoch_deadline_callback", "wasmtime_config_host_memory_creator_set",
    "wasmtime_config_memory_init_cow_set", "component.Func._func", "Store._context",
    "Store.ptr", "Config.ptr", "component.LinkerInstance.ptr", "WasmtimeError._consume",
    "WasmtimeError._from_ptr",
)
_KIND_NAMES = ("BOOL", "S8", "U8", "S16", "U16", "S32", "U32", "S64", "U64", "F32", "F64",
               "CHAR", "STRING", "LIST", "RECORD", "TUPLE", "VARIANT", "ENUM", "OPTION",
               "RESULT", "FLAGS", "RESOURCE")
_POOLING = (
    "wasmtime_pooling_allocation_config_new", "wasmtime_pooling_allocation_config_delete",
    "wasmtime_pooling_allocation_config_total_core_instances_set",
    "wasmtime_pooling_allocation_config_total_memories_set",
    "wasmtime_pooling_allocation_config_total_tables_set",
    "wasmtime_pooling_allocation_config_total_stacks_set",
    "wasmtime_pooling_allocation_config_max_memory_size_set",
    "wasmtime_pooling_allocation_config_table_elements_set",
    "wasmtime_pooling_allocation_config_max_unused_warm_slots_set",
    "wasmtime_pooling_allocation_config_linear_memory_keep_resident_set",
    "wasmtime_pooling_allocation_config_table_keep_resident_set",
    "wasmtime_pooling_allocation_strategy_set", "Config.ptr",
)

#: Every private name, by the path that uses it (the log ring uses none).
NAMES: dict[str, tuple[str, ...]] = {
    "core": _CORE,
    "host-functions": _HOST_FUNCTIONS,
    "c-extensions": _C_EXTENSIONS,
    "extism": _EXTISM,
    "components": (*_COMPONENTS, *(f"ffi.WASMTIME_COMPONENT_{k}" for k in _KIND_NAMES)),
    "pooling": _POOLING,
    "winch": ("wasmtime_config_strategy_set", "Config.ptr"),
    # routes/wasihttp.py's value-API host functions and byte lists (add_typed_func,
    # fast_byte_lists), beside the component names.
    "proxy": ("wasmtime_component_vallist_delete", "wasmtime_component_vallist_new_uninit",
              "wasmtime_component_linker_instance_add_func",
              "ffi.wasmtime_component_func_callback_t", "ffi.wasmtime_component_val_t",
              "ffi.wasmtime_component_vallist_t", "ffi.WASMTIME_COMPONENT_U8",
              "ffi.WASMTIME_COMPONENT_LIST", "component.FuncType._from_ptr",
              "component.ListType.convert_from_c", "component.ListType.convert_to_c",
              "component.ListType._is_bytes", "component.VariantType._cases",
              "component.VariantType._tagged", "component.LinkerInstance.ptr"),
}
#: Paths whose names are used together with the core ones: missing core names refuse them too.
_NEEDS_CORE = ("host-functions", "c-extensions", "extism")

#: The argument counts we rely on: of every C function bound below (``_bind`` adds them), and
#: of those the C extensions call by address or we call through wasmtime-py's prototype.
_ARITY: dict[str, int] = {
    "wasmtime_engine_increment_epoch": 1, "wasmtime_error_new": 1,
    "wasmtime_store_epoch_deadline_callback": 4, "wasmtime_error_exit_status": 2,
}


def _has(name: str) -> bool:
    if name.startswith("ffi."):
        return hasattr(ffi, name[4:])
    if name.startswith(("wasmtime_", "wasm_")):
        try:
            fn = getattr(ffi.dll, name)
        except AttributeError:
            return False
        want = _ARITY.get(name)
        theirs = getattr(fn, "argtypes", None)
        return want is None or theirs is None or len(theirs) == want
    owner: Any = wasmtime
    *path, attr = name.split(".")
    for part in path:
        owner = getattr(owner, part, None)
        if owner is None:
            return False
    annotated = any(attr in vars(k).get("__annotations__", {}) for k in owner.__mro__)
    return hasattr(owner, attr) or annotated


def _layout() -> list[str]:
    """Layouts the call paths assume (the scratch block, RawInstance, the C extensions)."""
    wrong = []
    checks = (("wasmtime_val_raw_t", 16), ("wasmtime_func_t", 16),
              ("wasmtime_instance_t", 16), ("wasmtime_extern_t", 32))
    for struct, size in checks:
        t = getattr(ffi, struct, None)
        if t is not None and ctypes.sizeof(t) != size:
            wrong.append(f"{struct} (size {ctypes.sizeof(t)}, not {size})")
    ext = getattr(ffi, "wasmtime_extern_t", None)
    if ext is not None and (getattr(ext, "kind").offset != 0  # noqa: B009 (a field)
                            or getattr(ext, "of").offset != 8):  # noqa: B009
        wrong.append("wasmtime_extern_t (kind at 0, payload at 8)")
    return wrong


def _bind(name: str, restype: Any, *argtypes: Any, keep_gil: bool = False) -> Any:
    """A prototype of our own over the C function ``name``: plain-int arguments convert faster
    than the POINTER(...) argtypes wasmtime-py declares, and its shared objects stay as they
    are. ``keep_gil``: for C calls that never run guest code and return in nanoseconds,
    dropping and re-taking the GIL costs more than the call (PYFUNCTYPE)."""
    _ARITY[name] = len(argtypes)
    fn = getattr(ffi.dll, name, None)
    addr = ctypes.cast(fn, c_void_p).value if fn is not None else None
    theirs = getattr(fn, "argtypes", None)
    if not addr or (theirs is not None and len(theirs) != len(argtypes)):
        return _absent(name)  # moved or re-signed: calling our prototype would corrupt memory
    proto = ctypes.PYFUNCTYPE if keep_gil else ctypes.CFUNCTYPE
    return proto(restype, *argtypes)(addr)


def _absent(name: str) -> Callable[..., Any]:
    def absent(*_args: Any) -> Any:
        raise PluginLoadError(f"{name} cannot be called: {PROBLEM}")
    return absent


# -- the core call path (sandbox/fastcall.py, extism/_instance.py) ---------------------------
call_unchecked = _bind("wasmtime_func_call_unchecked", c_void_p,
                       c_void_p, c_void_p, c_void_p, c_size_t, c_void_p)
set_epoch_deadline = _bind("wasmtime_context_set_epoch_deadline", None, c_void_p, c_uint64,
                           keep_gil=True)
set_fuel = _bind("wasmtime_context_set_fuel", c_void_p, c_void_p, c_uint64, keep_gil=True)
get_fuel = _bind("wasmtime_context_get_fuel", c_void_p, c_void_p, c_void_p, keep_gil=True)
store_new = _bind("wasmtime_store_new", c_void_p, c_void_p, c_void_p, c_void_p)
store_context = _bind("wasmtime_store_context", c_void_p, c_void_p, keep_gil=True)
store_delete = _bind("wasmtime_store_delete", None, c_void_p)
module_delete = _bind("wasmtime_module_delete", None, c_void_p)
store_limiter = _bind("wasmtime_store_limiter", None, c_void_p, c_int64, c_int64, c_int64,
                      c_int64, c_int64, keep_gil=True)
context_set_wasi = _bind("wasmtime_context_set_wasi", c_void_p, c_void_p, c_void_p)
instance_pre_instantiate = _bind("wasmtime_instance_pre_instantiate", c_void_p,
                                 c_void_p, c_void_p, c_void_p, c_void_p)
instance_export_get = _bind("wasmtime_instance_export_get", c_bool,
                            c_void_p, c_void_p, c_char_p, c_size_t, c_void_p, keep_gil=True)
memory_data = _bind("wasmtime_memory_data", c_void_p, c_void_p, c_void_p, keep_gil=True)
memory_data_size = _bind("wasmtime_memory_data_size", c_size_t, c_void_p, c_void_p,
                         keep_gil=True)
# -- host functions (sandbox/hostfunc.py) -----------------------------------------------------
caller_context = _bind("wasmtime_caller_context", c_void_p, c_void_p, keep_gil=True)
caller_export_get = _bind("wasmtime_caller_export_get", c_bool,
                          c_void_p, c_char_p, c_size_t, c_void_p, keep_gil=True)
trap_new = _bind("wasmtime_trap_new", c_void_p, c_char_p, c_size_t, keep_gil=True)
linker_define_func_unchecked = _bind(
    "wasmtime_linker_define_func_unchecked", c_void_p,
    c_void_p, c_char_p, c_size_t, c_char_p, c_size_t, c_void_p, c_void_p, c_void_p, c_void_p)


def _check() -> tuple[str, ...]:
    missing: list[str] = []
    for names in NAMES.values():
        missing.extend(n for n in names if n not in missing and not _has(n))
    return tuple(missing)


#: Layouts the call paths assume that this wasmtime breaks (counted with the core names).
_LAYOUT = tuple(_layout())
#: The private names (and layouts) this wasmtime lacks.
MISSING = _check() + _LAYOUT
#: True when the C extensions may run: the pinned version, every name present.
NATIVE_OK = FOUND == PINNED and not MISSING
#: The one line saying what does not match (None when all does).
PROBLEM: str | None = None if NATIVE_OK else (
    f"wasmtime {FOUND} found, omnicore is verified with {PINNED}; missing private names: "
    f"{', '.join(MISSING) or 'none'}; the C call path is off, plugins run on the Python "
    "call path")
if PROBLEM is not None:
    _log.warning("%s", PROBLEM)


def refused(path: str) -> str | None:
    """Why ``path`` (a key of :data:`NAMES`) cannot run on this wasmtime, or None."""
    if path == "c-extensions" and not NATIVE_OK:
        return PROBLEM
    needs = set(NAMES[path])
    if path == "core" or path in _NEEDS_CORE:
        needs.update(_CORE, _LAYOUT)
    lacking = [n for n in MISSING if n in needs]
    if not lacking:
        return None
    return (f"the {path} path needs private names wasmtime {FOUND} lacks "
            f"(omnicore is verified with {PINNED}): {', '.join(lacking)}")


def require(path: str, error: type[Exception] = PluginLoadError) -> None:
    """Raise ``error`` saying why, unless ``path`` can run on this wasmtime."""
    why = refused(path)
    if why is not None:
        raise error(why)


def hand_over(ext: Any, extern_of: int) -> None:
    """Give the C call path extension (``sandbox/_callpath.c`` and the sources built into it)
    the addresses of the C functions it calls; refused unless :data:`NATIVE_OK`."""
    if not NATIVE_OK:
        raise RuntimeError(f"the C call path is refused: {PROBLEM}")
    def addresses(*names: str) -> list[int | None]:
        return [c_function(n) for n in names]

    ext.bind(*addresses(
        "wasmtime_func_call_unchecked", "wasmtime_context_set_epoch_deadline",
        "wasmtime_memory_data", "wasmtime_memory_data_size", "wasmtime_caller_context",
        "wasmtime_trap_new"))
    ext.bind_epoch(*addresses(
        "wasmtime_engine_increment_epoch", "wasmtime_error_new",
        "wasmtime_store_epoch_deadline_callback"))
    ext.bind_instantiate(*addresses(
        "wasmtime_func_call_unchecked", "wasmtime_context_set_epoch_deadline",
        "wasmtime_memory_data_size", "wasmtime_store_new", "wasmtime_store_context",
        "wasmtime_store_delete", "wasmtime_store_limiter", "wasmtime_context_set_wasi",
        "wasmtime_instance_pre_instantiate", "wasmtime_instance_export_get"), extern_of)


# -- structs and conversions ------------------------------------------------------------------
#: ``wasmtime_extern_t`` (kind at byte 0, payload at :data:`EXTERN_OF`).
ExternT: Any = getattr(ffi, "wasmtime_extern_t", None)
EXTERN_OF: int = int(ExternT.of.offset) if ExternT is not None else 8
#: ``sizeof(wasmtime_memory_t)``: the bytes that identify one memory of a store.
MEMORY_T_SIZE: int = ctypes.sizeof(getattr(ffi, "wasmtime_memory_t", ctypes.c_uint64 * 3))


def c_function(name: str) -> int | None:
    """The address of the C function ``name`` in the library wasmtime-py loaded (what a C
    extension of ours calls; the names it needs are checked at import, :data:`NAMES`)."""
    return ctypes.cast(getattr(ffi.dll, name), c_void_p).value


def address_of(obj: Any) -> int:
    """The C pointer of a wasmtime-py object (Engine, InstancePre, Linker, FuncType, Store,
    Config, LinkerInstance) as an int; ints pass through."""
    if isinstance(obj, int):
        return obj
    return int(ctypes.cast(obj.ptr(), c_void_p).value or 0)


def wasi_raw(config: wasmtime.WasiConfig) -> int:
    """A WasiConfig's C pointer, taken over (the store it is set on owns it then)."""
    return int(ctypes.cast(config._consume(), c_void_p).value or 0)


def error_from(addr: int | Any) -> wasmtime.WasmtimeError:
    """The WasmtimeError for a ``wasmtime_error_t *`` (an int or a ctypes pointer), which it
    takes over and frees."""
    if isinstance(addr, int):
        addr = ctypes.cast(addr, ctypes.POINTER(ffi.wasmtime_error_t))
    return wasmtime.WasmtimeError._from_ptr(addr)


def exit_status(addr: int | Any) -> int | None:
    """The WASI exit status a ``wasmtime_error_t *`` (an int or a ctypes pointer) carries
    (None: not an exit); the error stays owned by the caller."""
    status = ctypes.c_int(0)
    errp = ctypes.cast(addr, ctypes.POINTER(ffi.wasmtime_error_t))
    return status.value if ffi.wasmtime_error_exit_status(errp, ctypes.byref(status)) else None


def trap_from(addr: int) -> wasmtime.Trap:
    """The Trap for a ``wasm_trap_t *``, which it takes over and frees."""
    return wasmtime.Trap._from_ptr(ctypes.cast(addr, ctypes.POINTER(ffi.wasm_trap_t)))


def error_raw(message: str | wasmtime.WasmtimeError) -> int:
    """A new ``wasmtime_error_t *`` for a C callback to return (wasmtime frees it)."""
    error = message if isinstance(message, wasmtime.WasmtimeError) \
        else wasmtime.WasmtimeError(message)
    return int(ctypes.cast(error._consume(), c_void_p).value or 0)


def context_of(store: wasmtime.Store) -> Any:
    """The store's ``wasmtime_context_t *`` (a ctypes pointer, for C functions)."""
    return store._context()


def store_context_address(store: wasmtime.Store) -> int:
    """The store's ``wasmtime_context_t *`` as an int."""
    return int(ctypes.cast(store._context(), c_void_p).value or 0)


def func_address(func: wasmtime.Func) -> int:
    """The address of a Func's ``wasmtime_func_t`` (what :data:`call_unchecked` takes)."""
    return int(ctypes.addressof(func._func))


def memory_address(memory: wasmtime.Memory) -> int:
    """The address of a Memory's ``wasmtime_memory_t`` (what :data:`memory_data` takes)."""
    return int(ctypes.addressof(memory._memory))


# -- engine configuration ---------------------------------------------------------------------
def use_winch(config: wasmtime.Config) -> None:
    """Compile with Winch: wasmtime-py's Config.strategy knows "auto" and "cranelift" only;
    the C API's wasmtime_strategy_t has WASMTIME_STRATEGY_WINCH = 2."""
    require("winch", ConfigError)
    ffi.wasmtime_config_strategy_set(config.ptr(), 2)


def set_pooling(config: wasmtime.Config, sizes: Iterable[tuple[str, int]]) -> None:
    """Switch ``config`` to the pooling allocator; ``sizes`` are (setting, value) pairs, the
    setting named as in ``wasmtime_pooling_allocation_config_<setting>_set``."""
    require("pooling", ConfigError)
    pac = ffi.wasmtime_pooling_allocation_config_new()
    try:
        for setting, value in sizes:
            getattr(ffi, f"wasmtime_pooling_allocation_config_{setting}_set")(pac, value)
        ffi.wasmtime_pooling_allocation_strategy_set(config.ptr(), pac)
    finally:
        ffi.wasmtime_pooling_allocation_config_delete(pac)


def set_memory_init_cow(config: wasmtime.Config, on: bool) -> None:
    ffi.wasmtime_config_memory_init_cow_set(config.ptr(), on)


def set_memory_creator(config: wasmtime.Config, creator: Any) -> None:
    """Make ``config``'s engine create linear memories through ``creator`` (a
    ``CAPI.wasmtime_memory_creator_t``, kept alive by the caller)."""
    ffi.wasmtime_config_host_memory_creator_set(config.ptr(), ctypes.byref(creator))


# -- components -------------------------------------------------------------------------------
#: wasmtime's component C API: the structs, callback types and functions the component
#: runtime uses, by their C names (only those in NAMES["components"]).
CAPI = SimpleNamespace(**{
    n.removeprefix("ffi."): getattr(ffi, n.removeprefix("ffi."))
    for n in NAMES["components"]
    if (n.startswith(("ffi.", "wasmtime_component_"))) and n not in MISSING})
#: ``wasmtime_component_valkind_t`` by kind name (BOOL, S8, ..., RESOURCE).
COMPONENT_KINDS: dict[str, int] = {
    k: int(getattr(ffi, f"WASMTIME_COMPONENT_{k}").value) for k in _KIND_NAMES
    if hasattr(ffi, f"WASMTIME_COMPONENT_{k}")}


def component_func(func: cm.Func) -> Any:
    """A reference to a component Func's ``wasmtime_component_func_t``."""
    return ctypes.byref(func._func)


def linker_instance_add_func(inst: cm.LinkerInstance, name: str, callback: Any, env: int,
                             finalizer: Any) -> None:
    """Define ``name`` in a component linker instance as a raw C callback."""
    raw = name.encode()
    error = ffi.wasmtime_component_linker_instance_add_func(
        inst.ptr(), ctypes.create_string_buffer(raw), len(raw), callback, env, finalizer)
    if error:
        raise error_from(error)


# -- bytes through wasmtime-py's component value API (routes/wasihttp.py) -------------------------
#
# wasmtime-py converts a ``list<u8>`` one element at a time in Python (a 4 KiB write cost
# ~5 ms of CPU); these do it with one copy each way, with the same result. Installed on
# wasmtime-py's ListType for byte lists only, by fast_byte_lists() (the first time a proxy
# component is linked).

_VAL = ffi.wasmtime_component_val_t
_STRIDE = ctypes.sizeof(_VAL)
_OF = _VAL.of.offset
_U8 = ffi.WASMTIME_COMPONENT_U8.value


def _address(pointer: Any) -> int:
    return int(ctypes.cast(pointer, ctypes.c_void_p).value or 0)


def _bytes_from_c(self: Any, c: Any) -> Any:
    if not self._is_bytes():
        return _PLAIN_FROM_C(self, c)
    assert c.kind == ffi.WASMTIME_COMPONENT_LIST.value
    try:
        n = c.of.list.size
        if n == 0:
            return b""
        raw = ctypes.string_at(_address(c.of.list.data), n * _STRIDE)
        return raw[_OF::_STRIDE]  # u8 elements own nothing: the list's delete frees all
    finally:
        ffi.wasmtime_component_vallist_delete(ctypes.byref(c.of.list))


def _bytes_to_c(self: Any, store: Any, val: Any, ptr: Any) -> None:
    if not self._is_bytes() or not isinstance(val, (bytes, bytearray)):
        _PLAIN_TO_C(self, store, val, ptr)
        return
    n = len(val)
    raw = ffi.wasmtime_component_vallist_t()
    ffi.wasmtime_component_vallist_new_uninit(raw, n)
    if n:
        image = bytearray(n * _STRIDE)
        image[0::_STRIDE] = bytes([_U8]) * n
        image[_OF::_STRIDE] = val
        ctypes.memmove(_address(raw.data), bytes(image), len(image))
    ptr.contents.kind = ffi.WASMTIME_COMPONENT_LIST
    ptr.contents.of.list = raw


_PLAIN_FROM_C = ListType.convert_from_c
_PLAIN_TO_C = ListType.convert_to_c


def fast_byte_lists() -> None:
    """Convert ``list<u8>`` values with one copy each way in wasmtime-py's value API
    (process-wide, for byte lists only; the same values as its own conversion). Raises
    PluginLoadError when this wasmtime lacks the names the proxy path uses."""
    require("proxy")
    if ListType.convert_from_c is not _bytes_from_c:
        ListType.convert_from_c = _bytes_from_c  # type: ignore[method-assign]
        ListType.convert_to_c = _bytes_to_c  # type: ignore[method-assign]


# -- component host functions whose types are read once (routes/wasihttp.py) ----------------------
#
# wasmtime-py's add_func reads the function's type again on every call, and each variant's
# cases with it (error-code's 39 at every result<_, error-code>): ~85 % of a request's CPU.
# A function defined here reads its type on its first call and keeps it (one linker per
# component: each function has one type), its variants' cases and tagging with it.

_FUNCS: dict[int, list[Any]] = {}
_next_func = [1]


def _memo(ty: Any) -> Any:
    """``ty`` with its variants' cases and tagging read once (nested types too)."""
    if isinstance(ty, VariantLikeType):
        cases = [(n, None if t is None else _memo(t)) for n, t in ty._cases()]
        ty._cases = lambda: cases  # type: ignore[method-assign]
        tagged = ty._tagged()
        ty._tagged = lambda: tagged  # type: ignore[method-assign]
    return ty


@ffi.wasmtime_component_func_callback_t  # type: ignore[untyped-decorator]
def _typed_impl(idx: int, context: Any, ty_raw: Any, args: Any, nargs: int, results: Any,
                nresults: int) -> Any:
    def run(store: Any) -> None:
        entry = _FUNCS[idx or 0]
        if entry[1] is None:
            with FuncType._from_ptr(ty_raw, owner=store) as fty:
                entry[1] = ([_memo(t) for _, t in fty.params],
                            None if fty.result is None else _memo(fty.result))
        params, result_ty = entry[1]
        try:
            pyargs = [ty.convert_from_c(args[i]) for i, ty in enumerate(params)]
            result = entry[0](store, *pyargs)
            if result_ty is not None:
                result_ty.convert_to_c(store, result, results)
        except wasmtime.WasmtimeError:
            raise
        except entry[2] as exc:  # the definer's own traps: the guest traps with its words
            raise wasmtime.WasmtimeError(str(exc)) from None
        except Exception as exc:  # a bug of ours: the guest traps on it, the log says
            _log.exception("a component host function failed")
            raise wasmtime.WasmtimeError(
                f"a host function failed: {type(exc).__name__}") from None
    # Every failure is a WasmtimeError by here: wasmtime-py keeps any other exception in one
    # global for whichever thread returns from wasm next (calls run on several threads).
    return catch_exceptions(context, run)


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)  # type: ignore[untyped-decorator]
def _typed_finalize(idx: int | None) -> None:
    funcs = _FUNCS
    if funcs is not None:  # (None while the interpreter ends)
        funcs.pop(idx or 0, None)


def add_typed_func(inst: cm.LinkerInstance, name: str, fn: Callable[..., Any], *,
                   traps: tuple[type[BaseException], ...] = ()) -> None:
    """Define ``name`` in a component linker instance as ``fn(store, *args)`` through the
    value API, its type read on its first call and kept (wasmtime-py's ``add_func`` reads it,
    and each variant's cases, on every call). An exception of ``traps`` traps the guest with
    its message; any other but a WasmtimeError is logged and traps it with its class's name."""
    idx = _next_func[0]
    _next_func[0] += 1
    _FUNCS[idx] = [fn, None, traps]
    raw = name.encode()
    error = ffi.wasmtime_component_linker_instance_add_func(
        inst.ptr(), ctypes.create_string_buffer(raw), len(raw), _typed_impl, idx,
        _typed_finalize)
    if error:
        raise error_from(error)


def set_epoch_deadline_callback(store: wasmtime.Store, callback: Any, finalizer: Any) -> None:
    """Make ``callback`` the epoch deadline callback of ``store``."""
    ffi.wasmtime_store_epoch_deadline_callback(store.ptr(), callback, None, finalizer)


class SharedModule(wasmtime.Module):
    """A compiled module :meth:`SandboxEngine.compile` shares by digest, freed only once no
    thread can reach it.

    wasmtime-py frees a module in ``__del__``, and CPython runs ``__del__`` *before* it clears
    the weak references to the object: the engine's table of shared modules would hand a
    module to a second loader of the same bytes while the first one's ``__del__`` is freeing
    it (a SIGSEGV in wasmtime, or ``ValueError: already closed``). So this module's own
    ``__del__`` and ``close`` free nothing; a weakref finalizer does, and CPython runs those
    only after every weak reference to the object is cleared, when no lookup can find it.
    """

    def __del__(self) -> None:
        pass

    def _delete(self, ptr: Any) -> None:  # wasmtime-py's close() frees through it
        pass

    def finalized(self) -> SharedModule:
        """This module, freed once unreachable (on a module just made: compiled by
        ``SharedModule(engine, wasm)`` or deserialized by sandbox/modcache.py). Once per
        module: a second call returns it as it is (a module made and then dropped for the
        cache entry it was stored as must be freed too, or its code stays mapped: issue 63)."""
        if getattr(self, "_free", None) is None:
            # The C free on the pointer alone: the finalizer must not hold the module.
            free = weakref.finalize(self, module_delete, address_of(self))
            free.atexit = False  # at exit a daemon thread may still call it: the OS frees it
            self._free = free
        return self
