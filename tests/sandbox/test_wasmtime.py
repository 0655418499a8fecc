"""sandbox/_wasmtime.py: the one door to wasmtime's private names, checked at import.

The pinned version and every private name are checked here on the installed wasmtime; a
mismatch is simulated in a subprocess (so the import-time check really runs) and plugins are
called on the fallback; a scan of the package's syntax trees proves no other module imports
or touches a private name of wasmtime.
"""

from __future__ import annotations

import ast
import ctypes
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
import wasmtime
from wasmtime import component as cm

import omnicore
from omnicore.errors import ConfigError
from omnicore.sandbox import _wasmtime as door
from tests.pysource import parse

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = Path(omnicore.__file__).resolve().parent
DOOR = PACKAGE / "sandbox" / "_wasmtime.py"
GREETER = ROOT / "build" / "plugins" / "greeter-rust.wasm"


# -- the installed wasmtime is the pinned one, with every name ---------------------------------

def test_the_pin_in_pyproject_is_the_version_the_door_checks() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert f"wasmtime=={door.PINNED}" in deps
    assert door.FOUND == door.PINNED


def test_every_private_name_is_present_and_the_native_paths_run() -> None:
    assert door.MISSING == ()
    assert door.PROBLEM is None and door.NATIVE_OK
    assert all(door.refused(path) is None for path in door.NAMES)


def test_a_moved_name_and_a_changed_signature_are_both_caught(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert not door._has("wasmtime_func_call_unchecked_v2")
    assert not door._has("ffi.wasmtime_val_raw_v2_t")
    assert not door._has("Func._func_v2")
    assert door._has("Func._func") and door._has("component.Func._func")
    # wasmtime-py's own prototype of the installed version says how many arguments the C
    # function takes: a re-signed function is as missing as a renamed one.
    monkeypatch.setitem(door._ARITY, "wasmtime_func_call_unchecked", 6)
    assert not door._has("wasmtime_func_call_unchecked")


def test_the_layouts_the_call_paths_assume() -> None:
    assert door._layout() == []
    assert door.EXTERN_OF == 8
    assert ctypes.sizeof(door.ExternT) == 32


def test_a_refused_engine_option_says_which_names_and_versions(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(door, "MISSING", ("wasmtime_config_strategy_set",))
    with pytest.raises(ConfigError, match=r"winch path needs private names wasmtime "
                       r"50\.0\.1 lacks \(omnicore is verified with 50\.0\.1\): "
                       r"wasmtime_config_strategy_set"):
        door.use_winch(wasmtime.Config())


# -- a mismatch, for real: the import-time check in a fresh interpreter -------------------------

_SIMULATE = """
import json, sys
from importlib import metadata
found, hidden = sys.argv[1], set(sys.argv[2].split(",")) - {""}
real_version = metadata.version
metadata.version = lambda name: found if name == "wasmtime" else real_version(name)
import os, tempfile
import wasmtime
from wasmtime import _ffi
# The door reads the version off the dist-info folder beside the package: one of `found`.
site = tempfile.mkdtemp()
os.mkdir(os.path.join(site, f"wasmtime-{found}.dist-info"))
wasmtime.__file__ = os.path.join(site, "wasmtime", "__init__.py")

class Without:
    # wasmtime's shared library without the C functions a newer version moved
    def __init__(self, dll): self.dll = dll
    def __getattr__(self, name):
        if name in hidden:
            raise AttributeError(name)
        return getattr(self.dll, name)

_ffi.dll = Without(_ffi.dll)
for name in hidden:  # and wasmtime-py without the internals it moved
    if "." in name:
        cls, attr = name.split(".")
        vars(getattr(wasmtime, cls)).get("__annotations__", {}).pop(attr, None)
"""


def _run(body: str, *args: object, found: str = "51.0.0", hidden: tuple[str, ...] = (),
         callpath: str = "auto") -> subprocess.CompletedProcess[str]:
    """Run ``body`` in a fresh interpreter where wasmtime is ``found`` and lacks ``hidden``;
    ``args`` follow in ``sys.argv[3:]``."""
    env = {**os.environ, "OMNICORE_CALLPATH": callpath,
           "PYTHONPATH": os.pathsep.join([str(PACKAGE.parent), str(ROOT)])}
    script = _SIMULATE + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script, found, ",".join(hidden),
                           *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)


#: A real plugin (with host functions), an echo at sizes around the input block, and an
#: Extism plugin, called on whichever path the door left open.
_CALLS = """
from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import PluginLoadError
from omnicore.extism import ExtismRuntime
from omnicore.sandbox import PluginModule, PluginRuntime, SandboxEngine, fastcall
from omnicore.sandbox.pluginlog import NATIVE as LOG_RING_IN_C
greeter_wasm, echo_wasm, extism_wasm = sys.argv[3:6]
engine = SandboxEngine(epoch_tick_ms=5)
greeter = PluginRuntime(engine, PluginModule.load(engine, greeter_wasm), builtin_registry(),
                        ["config"], {})
answers = {greeter.call("greet", json.dumps({"name": f"n{i}"}).encode()) for i in range(200)}
echo = PluginRuntime(engine, PluginModule.load(engine, echo_wasm), builtin_registry(), [], {})
big = bytes(range(256)) * 256
same = all(echo.call("echo", big[:n]) == big[:n] for n in (0, 1, 100, 65536))
try:
    extism = ExtismRuntime(engine, PluginModule.load(engine, extism_wasm), builtin_registry())
    extism_says = [extism.call("echo", b"x" * n).decode() for n in (1, 5)]
    extism.close()
except PluginLoadError as exc:
    extism_says = str(exc)
print(json.dumps({"native": fastcall.NATIVE, "slot": fastcall.CALLPATH is not None,
                  "answers": len(answers), "greet": greeter.call("greet", b'{"name":"Ada"}')
                  .decode(), "echo": same, "extism": extism_says,
                  "log_ring_in_c": LOG_RING_IN_C}))
greeter.close(); echo.close(); engine.close()
"""


@pytest.fixture(scope="module")
def plugins(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    from tests.extism.extism_fixtures import wat_plugin
    from tests.sandbox_fixtures import compile_wat

    folder = tmp_path_factory.mktemp("plugins")
    (folder / "echo.wasm").write_bytes(compile_wat("echo"))
    (folder / "codes.wasm").write_bytes(wat_plugin("codes"))
    return GREETER, folder / "echo.wasm", folder / "codes.wasm"


def _one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if "omnicore is verified with" in line]
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_new_wasmtime_runs_plugins_on_the_python_path_after_one_line(
        plugins: tuple[Path, Path, Path]) -> None:
    # Another version, and a C function only the C extensions take (by address) gone.
    got = _run(_CALLS, *plugins, hidden=("wasmtime_engine_increment_epoch",))
    assert got.returncode == 0, got.stderr
    line = _one_line(got.stderr)
    assert line == ("wasmtime 51.0.0 found, omnicore is verified with 50.0.1; missing private "
                    "names: wasmtime_engine_increment_epoch; the C call path is off, plugins "
                    "run on the Python call path")
    # The log ring uses no engine name: it stays in C where it is built.
    ring_built = importlib.util.find_spec("omnicore.sandbox._logring") is not None
    assert json.loads(got.stdout) == {"native": False, "slot": False, "answers": 200,
                                      "greet": '{"message":"Hello, Ada!"}', "echo": True,
                                      "extism": ["x", "xxxxx"], "log_ring_in_c": ring_built}


def test_a_new_version_alone_refuses_the_c_path_too(plugins: tuple[Path, Path, Path]) -> None:
    got = _run(_CALLS, *plugins)
    assert got.returncode == 0, got.stderr
    assert "missing private names: none" in _one_line(got.stderr)
    out = json.loads(got.stdout)
    assert (out["native"], out["answers"], out["extism"]) == (False, 200, ["x", "xxxxx"])


def test_native_required_refuses_to_start_naming_what_broke() -> None:
    got = _run("from omnicore.sandbox import fastcall\n", callpath="native",
               hidden=("wasmtime_error_new",))
    assert got.returncode != 0
    assert ("OMNICORE_CALLPATH=native but the C call path is refused: wasmtime 51.0.0 found, "
            "omnicore is verified with 50.0.1; missing private names: wasmtime_error_new"
            in got.stderr)


def test_a_missing_core_name_refuses_the_plugin_with_a_clear_error() -> None:
    # No fallback under the Python call path's own C functions: the load fails, no crash.
    got = _run("""
        from omnicore.errors import PluginLoadError
        from omnicore.capabilities.builtin import builtin_registry
        from omnicore.sandbox import PluginModule, PluginRuntime, SandboxEngine
        engine = SandboxEngine()
        module = PluginModule.load(engine, sys.argv[3])
        try:
            PluginRuntime(engine, module, builtin_registry(), ["config"], {})
        except PluginLoadError as exc:
            print("refused:", exc)
        """, GREETER, found="50.0.1", hidden=("wasmtime_func_call_unchecked",))
    assert got.returncode == 0, got.stderr
    assert got.stdout == ("refused: the host-functions path needs private names wasmtime "
                          "50.0.1 lacks (omnicore is verified with 50.0.1): "
                          "wasmtime_func_call_unchecked\n")


def test_a_missing_extism_name_refuses_extism_only(plugins: tuple[Path, Path, Path]) -> None:
    got = _run(_CALLS, *plugins, found="50.0.1", hidden=("Func._func",))
    assert got.returncode == 0, got.stderr
    out = json.loads(got.stdout)
    assert out["answers"] == 200 and out["echo"]
    assert out["extism"] == ("the extism path needs private names wasmtime 50.0.1 lacks "
                             "(omnicore is verified with 50.0.1): Func._func")


def test_a_missing_component_name_refuses_components_only(
        plugins: tuple[Path, Path, Path]) -> None:
    got = _run(_CALLS + """
try:
    import omnicore.sandbox.component
except Exception as exc:
    print(type(exc).__name__, exc)
""", *plugins, found="50.0.1", hidden=("wasmtime_component_func_post_return",))
    assert got.returncode == 0, got.stderr
    first, refusal = got.stdout.splitlines()
    out = json.loads(first)
    assert (out["answers"], out["extism"]) == (200, ["x", "xxxxx"])
    assert refusal == ("PluginLoadError the components path needs private names wasmtime "
                       "50.0.1 lacks (omnicore is verified with 50.0.1): "
                       "wasmtime_component_func_post_return")


# -- no other module touches a private name -----------------------------------------------------

def _wasmtime_private_names() -> tuple[frozenset[str], frozenset[str]]:
    """wasmtime-py's private names: of its packages (``_ffi``, ``_bindings``, ``_store``...),
    and of its classes (methods, attributes, instance attributes from their annotations,
    and ``ptr()``, a C pointer)."""
    modules: set[str] = set()
    members = {"ptr"}
    for mod in (wasmtime, cm):
        for name in dir(mod):
            if name.startswith("_"):
                modules.add(name)
            cls = getattr(mod, name)
            if inspect.isclass(cls) and cls.__module__.startswith("wasmtime"):
                for k in cls.__mro__:
                    if k.__module__.startswith("wasmtime"):
                        members.update(vars(k))
                        members.update(vars(k).get("__annotations__", {}))

    def private(n: str) -> bool:  # Enum's own machinery (_value_, _member_map_) is not wasmtime's
        return n.startswith("_") and not n.startswith("__") and not n.endswith("_")

    return (frozenset(filter(private, modules)),
            frozenset(n for n in members if n == "ptr" or private(n)))


def _c_names() -> frozenset[str]:
    """The C API's names as wasmtime-py binds them: functions, ``_t`` types, constants (a
    struct's tag, ``wasmtime_module`` beside ``wasmtime_module_t``, is left out: callers
    use the typedef, and the tag is also a fine name for a field of our own)."""
    from wasmtime import _bindings, _ffi  # the test may look: it is not the package

    names = {n for mod in (_ffi, _bindings) for n in dir(mod)
             if n.lstrip("_").lower().startswith(("wasm_", "wasmtime_", "wasi_"))}
    return frozenset(n for n in names if f"{n}_t" not in names)


_PACKAGES, _PRIVATE = _wasmtime_private_names()
_C_NAMES = _c_names()
_C_PREFIX = ("wasmtime_", "wasm_", "WASMTIME_", "WASM_")


def _names_c(value: str) -> bool:
    return value in _C_NAMES or value.startswith("wasmtime._")


def _is_wasmtime(node: ast.expr, origin: dict[str, str]) -> bool:
    return isinstance(node, ast.Name) and origin.get(node.id, "").startswith("wasmtime")


def private_uses(source: str) -> list[str]:
    """Where ``source`` imports or touches a private name of wasmtime (line: what)."""
    tree = parse(source)
    origin: dict[str, str] = {}  # local name -> the module it was imported from
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                origin[(alias.asname or alias.name).split(".")[0]] = alias.name
                if alias.name.startswith("wasmtime") and "._" in alias.name:
                    found.append(f"{node.lineno}: import {alias.name}")
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                origin[alias.asname or alias.name] = f"{node.module}.{alias.name}"
                if node.module.startswith("wasmtime") and (
                        "._" in f".{node.module}" or alias.name.startswith("_")):
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            base = node.value
            source_module = origin.get(base.id, "") if isinstance(base, ast.Name) else ""
            if source_module.startswith("omnicore.sandbox._wasmtime"):
                continue  # a handle the door gave
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue  # an attribute of our own class
            foreign = source_module and not source_module.startswith("wasmtime")
            if node.attr in _C_NAMES or (node.attr in _PRIVATE and not foreign) or (
                    node.attr in _PACKAGES and source_module.startswith("wasmtime")):
                found.append(f"{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.Call):
            func = node.func
            called = func.id if isinstance(func, ast.Name) else \
                func.attr if isinstance(func, ast.Attribute) else ""
            if called not in ("getattr", "hasattr", "import_module", "__import__"):
                continue
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and (
                        arg.value in _PRIVATE or _names_c(arg.value)
                        or (arg.value in _PACKAGES and _is_wasmtime(node.args[0], origin))):
                    found.append(f"{node.lineno}: {called}(..., {arg.value!r})")
                elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(
                        arg.values[0], ast.Constant) and str(arg.values[0].value).startswith(
                        (*_C_PREFIX, "wasmtime._")):
                    found.append(f"{node.lineno}: {called}(..., f{arg.values[0].value!r}...)")
    return sorted(found, key=lambda use: int(use.split(":")[0]))


def test_the_scan_sees_uses_not_words() -> None:
    assert private_uses(textwrap.dedent("""
        # wasmtime._ffi and f._func in a comment, ffi.wasmtime_func_call_unchecked
        '''from wasmtime import _ffi; store._context()'''
        self._func(1); self._memory = None
        from extism import extism as sdk
        sdk._ffi.NULL
        inst._store; getattr(inst, "_store"); kv._error
        from omnicore.sandbox._wasmtime import CAPI
        CAPI.wasmtime_component_val_t()
        """)) == []
    assert private_uses(textwrap.dedent("""
        from wasmtime import _ffi as ffi
        import wasmtime._bindings
        from wasmtime._func import Func
        import wasmtime
        f = wasmtime._func
        f._func
        store._context()
        linker.ptr()
        wasmtime.WasmtimeError._from_ptr(0)
        anything.wasmtime_store_new
        getattr(dll, "wasmtime_store_new")
        importlib.import_module("wasmtime._ffi")
        getattr(ffi, f"WASMTIME_COMPONENT_{kind}")
        config.wasm_simd = module.wasmtime_module
        """)) == ["2: from wasmtime import _ffi", "3: import wasmtime._bindings",
                  "4: from wasmtime._func import Func", "6: ._func", "7: ._func", "8: ._context",
                  "9: .ptr", "10: ._from_ptr", "11: .wasmtime_store_new",
                  "12: getattr(..., 'wasmtime_store_new')",
                  "13: import_module(..., 'wasmtime._ffi')",
                  "14: getattr(..., f'WASMTIME_COMPONENT_'...)"]


def test_only_the_door_imports_or_touches_wasmtime_private_names() -> None:
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == DOOR:
            continue
        uses = private_uses(path.read_text())
        if uses:
            offenders[str(path.relative_to(PACKAGE))] = uses
    assert offenders == {}
    assert private_uses(DOOR.read_text()) != []  # the scan does see the door's own
