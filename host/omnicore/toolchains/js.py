"""JavaScript and TypeScript plugins on QuickJS-ng, built without a native toolchain.

The JS runtime (``sdk/js/runtime``: QuickJS-ng + our ABI v1 shim) is compiled once with clang
for ``wasm32-wasi`` and cached under ``build/js-runtime/<hash of sdist, shim and flags>``.
A plugin build then is pure Python (see :mod:`omnicore.toolchains._js_wasm`):

1. the source: a plain ``.js`` file is used as is; TypeScript, relative imports and npm
   packages are bundled into one ES module with esbuild (``omnicore`` stays external);
2. the runtime is instantiated under wasmtime with stub host functions to load the source
   once: syntax and top-level errors become a :class:`BuildError`, and the exported functions
   become the handlers;
3. the runtime compiles the module to QuickJS bytecode (no parsing in each instance);
4. the bytecode goes into the runtime's reserved region; unless the top level calls a host
   function, ``_initialize`` is run here and the initialised memory becomes the module's data
   (a snapshot: a new instance is a memory copy), else the region is one extra data segment;
5. ``omni_h<i>`` are renamed to the handler names, and the imports of capabilities the source
   does not import from ``"omnicore"`` are replaced by trapping stubs (the runtime checks the
   same mask first and throws a clear JS error instead of reaching them).

A JS plugin project is a folder with ``plugin.js``/``plugin.ts`` (or ``src/plugin.*``,
``index.*``, or the ``main`` of its ``package.json``), or a single ``.js``/``.ts`` file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from importlib import metadata
from pathlib import Path
from string import Template
from typing import Any

import wasmtime

from omnicore.errors import BuildError
from omnicore.toolchains import UnitTests, locations
from omnicore.toolchains._js_sourcemap import stack_mapper
from omnicore.toolchains._js_typecheck import TYPESCRIPT_VERSION, find_tsc, typecheck
from omnicore.toolchains._js_wasm import call_sites, mutable_globals, nonzero_segments, rewrite

__all__ = [
    "CAPABILITIES",
    "EXTENSIONS",
    "LANGUAGE",
    "MAX_HANDLERS",
    "check",
    "compile",
    "detect",
    "ensure_esbuild",
    "ensure_runtime",
    "ensure_tsc",
    "esbuild",
    "runtime_path",
    "scaffold",
    "unit_tests",
    "used_capabilities",
]

LANGUAGE = "js"
EXTENSIONS = ("js", "ts")
#: The namespaces of specs/abi.md §4 in the runtime's capability-mask bit order.
CAPABILITIES = ("log", "config", "kv", "memory", "vectors", "tasks", "http", "events", "secrets")
MAX_HANDLERS = 64
QUICKJS_SDIST = "quickjs_ng-0.17.0.2.tar.gz"
ESBUILD_VERSION = "0.25.12"
BUILD_TIMEOUT_S = 600
#: Pre-initialise plugins at build time when their top level calls no host function.
SNAPSHOT = True
#: How long top-level code may run while the build loads the plugin (wasmtime fuel units).
LOAD_FUEL = 2_000_000_000

_TEMPLATES = Path(__file__).parent / "templates"
_SOURCES = (".js", ".mjs", ".ts", ".mts")
_ENTRIES = ("plugin.ts", "plugin.js", "plugin.mjs", "src/plugin.ts", "src/plugin.js",
            "index.ts", "index.js")
_QJS_FILES = ("dtoa", "libregexp", "libunicode", "quickjs")
# -Os: 30% smaller than -O2 (0.8 vs 1.2 MB), so hosts compile a JS plugin ≈1.5x faster;
# warm calls measured the same within noise (marked rendering, 100 B echo).
# -mcpu=mvp: newer clangs enable post-MVP features by default (reference types change element
# segment encodings); the plugin rewriter (_js_wasm) is written for MVP code plus bulk memory.
_CFLAGS = ("--target=wasm32-wasi", "-mcpu=mvp", "-Os", "-fno-strict-aliasing")
_LDFLAGS = ("-mexec-model=reactor", "-Wl,--strip-all", "-Wl,-z,stack-size=1048576")
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
_IMPORT_OMNICORE = re.compile(
    r"""\bimport\s*(?:\{(?P<named>[^}]*)\}|\*\s*as\s+(?P<ns>[A-Za-z_$][\w$]*))\s*from\s*["']omnicore["']""")
_DYNAMIC_OMNICORE = re.compile(r"""\bimport\s*\(\s*["']omnicore["']\s*\)""")
#: How the runtime's module loader refuses an import other than "omnicore" (omnicore_js.c).
_FOREIGN_IMPORT = "ReferenceError: cannot import"


def _sdk() -> Path:
    return locations.sdk_dir("js")


def _base_dir() -> Path:
    return locations.cache_dir()


def detect(src: Path) -> bool:
    """A ``.js``/``.ts`` file, or a folder holding one of the entry files."""
    if src.is_file():
        return src.suffix in _SOURCES
    return src.is_dir() and _entry(src) is not None


def _entry(src: Path) -> Path | None:
    if src.is_file():
        return src
    pkg = src / "package.json"
    if pkg.is_file():
        with contextlib.suppress(ValueError, OSError):
            main = json.loads(pkg.read_text(encoding="utf-8")).get("main")
            if isinstance(main, str) and (src / main).is_file() and main.endswith(_SOURCES):
                return src / main
    return next((src / e for e in _ENTRIES if (src / e).is_file()), None)


def check() -> str | None:
    """None when the JS runtime is built or can be built, else what to install."""
    if runtime_path().exists():
        return None
    if _clang() is None:
        return ("the omnicore JS runtime is not built and clang is missing: "
                "`apt-get install clang lld wasi-libc` (or run scripts/setup-toolchains.sh)")
    if _sdist() is None:
        return (f"the QuickJS-ng sdist is missing: `pip download --no-binary :all: --no-deps "
                f"quickjs-ng==0.17.0.2 -d {_base_dir() / 'third_party'}`")
    return None


# ---------------------------------------------------------------------------------------------
# the runtime (built once with clang, then cached)


def _clang() -> str | None:
    return shutil.which("clang") or shutil.which("clang-14")


def _sdist() -> Path | None:
    path = _base_dir() / "third_party" / QUICKJS_SDIST
    return path if path.is_file() else None


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def _runtime_key() -> str:
    sdist = _sdist()
    shim = _sdk() / "runtime" / "omnicore_js.c"
    api = _sdk() / "runtime" / "api.js"
    unit = _sdk() / "runtime" / "quickjs_unit.c"
    return _digest(sdist.read_bytes() if sdist else b"", shim.read_bytes(), api.read_bytes(),
                   unit.read_bytes(),
                   " ".join(_CFLAGS + _LDFLAGS).encode())


def runtime_path() -> Path:
    """Where the runtime for the current sdist + shim + flags lives (may not exist yet)."""
    return _base_dir() / "js-runtime" / _runtime_key() / "omnicore-js.wasm"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # several builds (tests, build-all, a watcher) may want the runtime at the same moment
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{what} failed: {exc}", toolchain=LANGUAGE) from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-4000:]
        raise BuildError(f"{what} failed:\n{detail}", toolchain=LANGUAGE)


def ensure_runtime() -> Path:
    """Build the JS runtime if it is not cached yet; return its path."""
    out = runtime_path()
    if out.exists():
        return out
    problem = check()
    if problem:
        raise BuildError(problem, toolchain=LANGUAGE)
    clang, sdist = _clang(), _sdist()
    assert clang and sdist
    with _locked(out.parent.parent / ".lock"):
        if out.exists():
            return out
        qjs = _quickjs_objects(clang, sdist)
        work = out.parent
        work.mkdir(parents=True, exist_ok=True)
        api = (_sdk() / "runtime" / "api.js").read_bytes()
        header = work / "omnicore_api.h"
        header.write_text("static const char OMNI_API_JS[] = {"
                          + ",".join(str(b) for b in api) + ",0};\n"
                          + f"#define OMNI_API_JS_LEN {len(api)}\n", encoding="ascii")
        tmp = work / "omnicore-js.wasm.tmp"
        _run([clang, *_CFLAGS, *_LDFLAGS, f"-I{qjs['include']}", f"-I{work}",
              str(_sdk() / "runtime" / "omnicore_js.c"), *qjs["objects"], "-o", str(tmp)],
             "linking the omnicore JS runtime")
        tmp.replace(out)
    return out


def _quickjs_objects(clang: str, sdist: Path) -> dict[str, Any]:
    """QuickJS-ng compiled to wasm objects, cached by sdist and flags (the slow part, ≈25 s)."""
    unit = _sdk() / "runtime" / "quickjs_unit.c"
    key = _digest(sdist.read_bytes(), unit.read_bytes(), " ".join(_CFLAGS).encode())
    base = _base_dir() / "js-runtime" / f"quickjs-{key}"
    src_root = base / "src"
    objects = [base / f"{name}.o" for name in _QJS_FILES]
    upstream = src_root / sdist.name.removesuffix(".tar.gz") / "upstream-quickjs"
    if all(o.exists() for o in objects):
        return {"include": upstream, "objects": [str(o) for o in objects]}
    if not upstream.is_dir():
        src_root.mkdir(parents=True, exist_ok=True)
        with tarfile.open(sdist) as tar:
            tar.extractall(src_root, filter="data")
    for name, obj in zip(_QJS_FILES, objects, strict=True):
        if not obj.exists():
            tmp = obj.with_suffix(".o.tmp")
            # quickjs.c goes in through our unit, which adds one accessor (quickjs_unit.c)
            source = unit if name == "quickjs" else upstream / f"{name}.c"
            _run([clang, *_CFLAGS, f"-I{upstream}", "-c", str(source), "-o", str(tmp)],
                 f"compiling QuickJS-ng {name}.c")
            tmp.replace(obj)
    return {"include": upstream, "objects": [str(o) for o in objects]}


@dataclass(frozen=True)
class _Runtime:
    wasm: bytes
    sites: list[tuple[int, int, int]]
    region_ptr: int
    region_cap: int
    engine: wasmtime.Engine
    module: wasmtime.Module


@cache
def _load_runtime(path: Path) -> _Runtime:
    wasm = path.read_bytes()
    config = wasmtime.Config()
    config.consume_fuel = True
    engine = wasmtime.Engine(config)
    cached = path.with_suffix(f".wasmtime-{metadata.version('wasmtime')}.cwasm")
    module = None
    if cached.exists():
        with contextlib.suppress(wasmtime.WasmtimeError):
            module = wasmtime.Module.deserialize_file(engine, str(cached))
    if module is None:
        module = wasmtime.Module(engine, wasm)
        tmp = cached.with_suffix(f".{os.getpid()}.tmp")  # builds may run in parallel
        tmp.write_bytes(module.serialize())
        tmp.replace(cached)
    store, instance = _instantiate(engine, module, [])
    exports = instance.exports(store)
    ptr = exports["omni_js_region_ptr"](store)  # type: ignore[operator]
    cap = exports["omni_js_region_cap"](store)  # type: ignore[operator]
    return _Runtime(wasm, call_sites(wasm), int(ptr), int(cap), engine, module)


def _stub(ty: wasmtime.FuncType, name: str, calls: list[str]) -> Any:
    results = [str(r) for r in ty.results]

    def stub(*args: Any) -> Any:
        calls.append(name)
        if not results:
            return None
        return 0 if results == ["i64"] else -1  # i32: NOT_FOUND; i64: an empty §3.3 block

    return stub


def _instantiate(engine: wasmtime.Engine, module: wasmtime.Module, calls: list[str],
                 ) -> tuple[wasmtime.Store, wasmtime.Instance]:
    """An instance whose host functions are stubs that record their names in ``calls``."""
    store = wasmtime.Store(engine)
    store.set_fuel(LOAD_FUEL)
    store.set_wasi(wasmtime.WasiConfig())
    linker = wasmtime.Linker(engine)
    linker.define_wasi()
    for imp in module.imports:
        if imp.module.startswith("omnicore:") and isinstance(imp.type, wasmtime.FuncType):
            linker.define_func(imp.module, imp.name or "", imp.type,
                               _stub(imp.type, f"{imp.module}.{imp.name}", calls))
    return store, linker.instantiate(store, module)


def _unpack(store: wasmtime.Store, memory: wasmtime.Memory, packed: int) -> tuple[bool, bytes]:
    packed &= (1 << 64) - 1
    ptr, n = packed >> 32, packed & 0x7FFF_FFFF
    return bool(packed & 0x8000_0000), bytes(memory.read(store, ptr, ptr + n)) if n else b""


_BYTECODE = 1 << 31


def _region(code: bytes, handlers: list[str], flags: int) -> bytes:
    names = "\n".join(handlers).encode()
    return b"OMJS" + struct.pack("<III", flags, len(names), len(code)) + names + code + b"\0"


def _snapshot(rt: _Runtime, region: bytes, plugin: str,
              ) -> tuple[list[tuple[int, bytes]], int] | None:
    """The linear memory right after ``_initialize``, as data segments, and its page count.

    Pre-initialising at build time (what Wizer does for Javy) makes a new instance a memory
    copy instead of creating a JS context and evaluating the plugin (≈1.5-6 ms). Not done
    when the top level called a host function: those calls must happen in every instance,
    with its own grants and config. A snapshot cannot capture mutable globals either, so a
    runtime with more than the stack pointer gets none.
    """
    if mutable_globals(rt.wasm) > 1:
        return None
    calls: list[str] = []
    store, instance = _instantiate(rt.engine, rt.module, calls)
    exports = instance.exports(store)
    memory = exports["memory"]
    assert isinstance(memory, wasmtime.Memory)
    memory.write(store, region, rt.region_ptr)
    exports["_initialize"](store)  # type: ignore[operator]
    if calls:
        return None
    image = bytes(memory.read(store, 0, memory.data_len(store)))
    pages = memory.size(store)
    # the bytecode must load as the source did (omni_js_exports reports a load error)
    failed, body = _unpack(store, memory, int(exports["omni_js_exports"](store)))  # type: ignore[operator]
    if failed:
        raise BuildError(f"the compiled plugin does not load: {body.decode(errors='replace')}",
                         plugin=plugin, toolchain=LANGUAGE)
    return nonzero_segments(image), pages


def _bytecode(rt: _Runtime, source: bytes, plugin: str) -> bytes:
    """The module compiled to QuickJS bytecode by the runtime itself (so versions match)."""
    store, instance = _instantiate(rt.engine, rt.module, [])
    exports = instance.exports(store)
    memory = exports["memory"]
    assert isinstance(memory, wasmtime.Memory)
    exports["_initialize"](store)  # type: ignore[operator]
    ptr = exports["omni_alloc"](store, len(source) + 1)  # type: ignore[operator]
    if not ptr:
        raise BuildError("the JS runtime ran out of memory compiling the plugin",
                         plugin=plugin, toolchain=LANGUAGE)
    memory.write(store, source + b"\0", int(ptr))
    packed = exports["omni_js_compile"](store, ptr, len(source))  # type: ignore[operator]
    failed, code = _unpack(store, memory, int(packed))
    if failed:
        raise BuildError(code.decode("utf-8", "replace"), plugin=plugin, toolchain=LANGUAGE)
    return code


def _load_exports(rt: _Runtime, source: bytes, plugin: str) -> list[str]:
    """Run the plugin's top level once; return its exported function names."""
    region = _region(source, [], (1 << len(CAPABILITIES)) - 1)
    if len(region) > rt.region_cap:
        raise BuildError(f"the bundled source is {len(source)} bytes; the JS runtime holds at "
                         f"most {rt.region_cap - 17} (drop unused dependencies or minify)",
                         plugin=plugin, toolchain=LANGUAGE)
    store, instance = _instantiate(rt.engine, rt.module, [])
    exports = instance.exports(store)
    memory = exports["memory"]
    assert isinstance(memory, wasmtime.Memory)
    memory.write(store, region, rt.region_ptr)
    try:
        exports["_initialize"](store)  # type: ignore[operator]
        packed = exports["omni_js_exports"](store)  # type: ignore[operator]
    except wasmtime.Trap as exc:
        reason = ("it ran out of time (an endless loop at top level?)"
                  if "fuel" in str(exc) else str(exc).splitlines()[0])
        raise BuildError(f"loading the plugin failed: {reason}", plugin=plugin,
                         toolchain=LANGUAGE) from exc
    failed, body = _unpack(store, memory, int(packed))
    if failed:
        raise BuildError(body.decode("utf-8", "replace"), plugin=plugin, toolchain=LANGUAGE)
    return list(json.loads(body))


# ---------------------------------------------------------------------------------------------
# the source: as is, or bundled with esbuild


def used_capabilities(source: str) -> set[str]:
    """The ``omnicore`` namespaces a (bundled) ES module imports; ``log`` is always linked."""
    used = {"log"}
    if _DYNAMIC_OMNICORE.search(source):
        return set(CAPABILITIES)
    for match in _IMPORT_OMNICORE.finditer(source):
        if match["ns"]:
            rest = source[match.end():]
            name = re.escape(match["ns"])
            members = re.findall(rf"(?<![\w$.]){name}\s*\.\s*([\w$]+)", rest)
            if len(members) != len(re.findall(rf"(?<![\w$.]){name}(?![\w$])", rest)):
                return set(CAPABILITIES)  # the namespace object escapes: link everything
            used |= set(members)
        else:
            for part in match["named"].split(","):
                used.add(part.strip().split(" as ")[0].strip())
    return used & set(CAPABILITIES)


def esbuild() -> str | None:
    """An esbuild binary: the project's, ``$OMNICORE_ESBUILD``, PATH, or the cached one."""
    configured = os.environ.get("OMNICORE_ESBUILD")
    if configured:
        return configured
    cached = _base_dir() / "js-tools" / "node_modules" / ".bin" / "esbuild"
    return str(cached) if cached.exists() else shutil.which("esbuild")


def ensure_esbuild(project: Path | None = None) -> str:
    """The esbuild to use for ``project``, installed from npm into the build cache if needed."""
    if project is not None:
        local = project / "node_modules" / ".bin" / "esbuild"
        if local.exists():
            return str(local)
    found = esbuild()
    if found:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError("TypeScript, relative imports and npm packages need esbuild, and npm "
                         "is not installed: install Node.js 18+ (npm), or `npm i -g esbuild`, "
                         "or write the plugin as one plain .js file importing only \"omnicore\"",
                         toolchain=LANGUAGE)
    tools = _base_dir() / "js-tools"
    with _locked(tools / ".lock"):
        if not (tools / "node_modules" / ".bin" / "esbuild").exists():
            _run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(tools),
                  f"esbuild@{ESBUILD_VERSION}"], f"npm install esbuild@{ESBUILD_VERSION}")
    return str(tools / "node_modules" / ".bin" / "esbuild")


def ensure_tsc(project: Path | None = None) -> str:
    """The tsc to type-check ``project`` with, installed from npm into the build cache if
    needed (``scripts/setup-toolchains.sh`` installs it ahead of time)."""
    tools = _base_dir() / "js-tools"
    found = find_tsc(project, tools)
    if found:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError("TypeScript plugins are type-checked with tsc, and npm is not "
                         "installed: install Node.js 18+ (npm), or `npm i -g typescript`",
                         toolchain=LANGUAGE)
    with _locked(tools / ".lock"):
        if find_tsc(None, tools) is None:
            package = f"typescript@{TYPESCRIPT_VERSION}"
            _run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(tools), package],
                 f"npm install {package}")
    return str(tools / "node_modules" / ".bin" / "tsc")


def _install_deps(project: Path) -> None:
    pkg = json.loads((project / "package.json").read_text(encoding="utf-8"))
    if not pkg.get("dependencies") and not pkg.get("devDependencies"):
        return
    lock = project / "package-lock.json"
    installed = project / "node_modules" / ".package-lock.json"  # written by npm on install
    if installed.exists() and (not lock.exists()
                               or lock.stat().st_mtime <= installed.stat().st_mtime):
        return
    npm = shutil.which("npm")
    if npm is None:
        raise BuildError(f"{project} has npm dependencies but npm is not installed: install "
                         "Node.js 18+ and run `npm ci` there", plugin=project.name,
                         toolchain=LANGUAGE)
    command = "ci" if lock.exists() else "install"
    _run([npm, command, "--no-audit", "--no-fund"], f"npm {command} in {project}", cwd=project)


def _bundle(entry: Path, project: Path | None, work: Path) -> bytes:
    """One ES module, with JS appended that maps its stack frames to the original files."""
    if project is not None and (project / "package.json").is_file():
        _install_deps(project)
    tool = ensure_esbuild(project)
    out = (work / "bundle.js").resolve()  # esbuild runs in the project folder
    cmd = [tool, str(entry.resolve()), "--bundle", "--format=esm", "--platform=neutral",
           "--target=es2023", "--external:omnicore", "--main-fields=module,main",
           "--sourcemap=external", "--log-level=error", f"--outfile={out}"]
    try:
        proc = subprocess.run(cmd, cwd=project or entry.parent, capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"esbuild failed: {exc}", toolchain=LANGUAGE) from exc
    if proc.returncode != 0:
        raise BuildError(f"esbuild could not bundle {entry.name}:\n"
                         f"{(proc.stderr or proc.stdout).strip()[-4000:]}",
                         plugin=entry.stem, toolchain=LANGUAGE)
    mapper = stack_mapper(out.with_name("bundle.js.map"), project or entry.parent)
    return out.read_bytes() + mapper.encode()


# ---------------------------------------------------------------------------------------------
# the build


def compile(src: Path, work: Path) -> bytes:
    """Build the JS/TS plugin at ``src`` into a raw wasm module (no manifest)."""
    entry = _entry(src)
    plugin = src.stem if src.is_file() else src.name
    if entry is None:
        raise BuildError(f"{src}: no plugin entry found (plugin.js, plugin.ts, index.js, ... "
                         f"or package.json \"main\")", plugin=plugin, toolchain=LANGUAGE)
    work.mkdir(parents=True, exist_ok=True)
    text = entry.read_text(encoding="utf-8")
    project = src if src.is_dir() else None
    rt = _load_runtime(ensure_runtime())
    if entry.suffix in (".ts", ".mts"):
        typecheck(ensure_tsc(project), entry, project, _sdk() / "index.d.ts", work, plugin)
        source = _bundle(entry, project, work)
        exported = _load_exports(rt, source, plugin)
    else:
        # Plain JS is tried as is, so a file importing only "omnicore" never needs esbuild
        # (however its comments and strings look); the runtime refuses any other import.
        source = text.encode()
        try:
            exported = _load_exports(rt, source, plugin)
        except BuildError as exc:
            if _FOREIGN_IMPORT not in str(exc):
                raise
            source = _bundle(entry, project, work)
            exported = _load_exports(rt, source, plugin)
    handlers = [n for n in exported if n != "default" and not n.startswith(("_", "omni_"))]
    if "memory" in handlers:
        raise BuildError(f"{entry.name} exports a function named 'memory': that wasm export "
                         f"name is the plugin's linear memory; rename the handler",
                         plugin=plugin, toolchain=LANGUAGE)
    if not handlers:
        raise BuildError(f"{entry.name} exports no handler: write `export function greet(input) "
                         f"{{ ... }}`", plugin=plugin, toolchain=LANGUAGE)
    if len(handlers) > MAX_HANDLERS:
        raise BuildError(f"{entry.name} exports {len(handlers)} functions; a JS plugin has at "
                         f"most {MAX_HANDLERS} handlers", plugin=plugin, toolchain=LANGUAGE)
    used = used_capabilities(source.decode("utf-8", "replace"))
    mask = sum(1 << i for i, name in enumerate(CAPABILITIES) if name in used)
    drop = {f"omnicore:{name}" for name in CAPABILITIES if name not in used}
    rename = {f"omni_h{i}": name for i, name in enumerate(handlers)}
    unused = {f"omni_h{i}" for i in range(len(handlers), MAX_HANDLERS)}
    unused |= {"omni_js_exports", "omni_js_compile", "omni_js_region_ptr", "omni_js_region_cap"}
    code = _bytecode(rt, source, plugin)
    region = _region(code, handlers, mask | _BYTECODE)
    if len(region) > rt.region_cap:
        raise BuildError(f"the compiled plugin is {len(code)} bytes; the JS runtime holds at "
                         f"most {rt.region_cap - 17} (drop unused dependencies)",
                         plugin=plugin, toolchain=LANGUAGE)
    snapshot = _snapshot(rt, region, plugin) if SNAPSHOT else None
    if snapshot is None:
        unused.add("omni_js_resume")
        return rewrite(rt.wasm, sites=rt.sites, drop_modules=drop, rename=rename,
                       drop_exports=unused, data=[(rt.region_ptr, region)])
    segments, pages = snapshot
    rename["omni_js_resume"] = "_initialize"  # the heap is ready; only reseed per instance
    unused.add("_initialize")
    return rewrite(rt.wasm, sites=rt.sites, drop_modules=drop, rename=rename,
                   drop_exports=unused, data=segments, replace_data=True, memory_pages=pages)


_TEST_FILE = re.compile(r"(^|[._-])test\.(m?[jt]s)$")


def unit_tests(src: Path) -> UnitTests:
    """``node --test`` on the project's ``*.test.js``/``*.test.ts`` files, with the SDK's
    Node test host (``sdk/js/testing``) answering ``import ... from "omnicore"``."""
    node = shutil.which("node")
    plugin = src.stem if src.is_file() else src.name
    if node is None:
        raise BuildError("JS/TS unit tests run on Node.js 20+, and `node` is not on PATH",
                         plugin=plugin, toolchain=LANGUAGE)
    project = src if src.is_dir() else src.parent
    files = sorted(p for p in project.rglob("*") if p.is_file() and _TEST_FILE.search(p.name)
                   and "node_modules" not in p.relative_to(project).parts)
    if not files:
        raise BuildError(f"{project}: no test files (plugin.test.js or plugin.test.ts; "
                         f"`omnicore new plugin --lang js` writes one)", plugin=plugin,
                         toolchain=LANGUAGE)
    if (project / "package.json").is_file():
        _install_deps(project)
    env = dict(os.environ)
    if any(p.suffix in (".ts", ".mts") for p in files):
        # The test host strips types with esbuild's JS API: the package beside the binary.
        package = Path(ensure_esbuild(project)).resolve().parents[1]
        if (package / "package.json").is_file():
            env["OMNICORE_ESBUILD_PACKAGE"] = str(package)
    register = _sdk() / "testing" / "register.js"
    argv = [node, "--enable-source-maps", "--import", register.as_uri(), "--test",
            *(str(p) for p in files)]
    return UnitTests(argv, env, project)


def scaffold(dest: Path, name: str, lang: str) -> None:
    """Create a JS (``lang="js"``) or TypeScript (``"ts"``) plugin project that builds as is."""
    if lang not in EXTENSIONS:
        raise BuildError(f"the JS toolchain does not scaffold {lang!r}")
    if not _NAME.fullmatch(name):
        raise BuildError(f"invalid plugin name {name!r}: use lowercase letters, digits, '-' "
                         f"and '_', starting with a letter or digit, at most 63 characters")
    dest.mkdir(parents=True, exist_ok=True)
    values = {"name": name, "sdk_types": str(_sdk() / "index.d.ts")}
    for template in sorted((_TEMPLATES / lang).glob("*.tmpl")):
        text = Template(template.read_text(encoding="utf-8")).substitute(values)
        # Package data keeps no dotfiles reliably: gitignore.tmpl becomes .gitignore.
        target = template.name.removesuffix(".tmpl").replace("gitignore", ".gitignore")
        (dest / target).write_text(text, encoding="utf-8")
