"""The plugin build: a JS/TS source made into a wasm module, in pure Python.

1. the source: a plain ``.js`` file is used as is; TypeScript, relative imports and npm
   packages are bundled into one ES module with esbuild (:mod:`~omnicore.toolchains.js.bundle`);
2. the runtime loads the source once (:mod:`~omnicore.toolchains.js.evaluate`): syntax and
   top-level errors become a :class:`BuildError`, and the exported functions the handlers;
3. the runtime compiles the module to QuickJS bytecode (no parsing in each instance);
4. the bytecode goes into the runtime's reserved region; unless the top level calls a host
   function, ``_initialize`` is run here and the initialised memory becomes the module's data
   (a snapshot: a new instance is a memory copy), else the region is one extra data segment;
5. ``omni_h<i>`` are renamed to the handler names, and the imports of capabilities the source
   does not import from ``"omnicore"`` are replaced by trapping stubs
   (:mod:`~omnicore.toolchains.js.rewrite`; the runtime checks the same mask first and throws
   a clear JS error instead of reaching them).
"""

from __future__ import annotations

from pathlib import Path

from omnicore.errors import BuildError
from omnicore.toolchains import locations
from omnicore.toolchains.js import evaluate
from omnicore.toolchains.js.bundle import bundle
from omnicore.toolchains.js.commands import LANGUAGE
from omnicore.toolchains.js.npm import ensure_tsc
from omnicore.toolchains.js.rewrite import rewrite
from omnicore.toolchains.js.runtime import ensure_runtime
from omnicore.toolchains.js.source import CAPABILITIES, FOREIGN_IMPORT, entry, used_capabilities
from omnicore.toolchains.js.typecheck import typecheck

__all__ = ["MAX_HANDLERS", "SNAPSHOT", "compile"]

MAX_HANDLERS = 64
#: Pre-initialise plugins at build time when their top level calls no host function.
SNAPSHOT = True


def compile(src: Path, work: Path) -> bytes:
    """Build the JS/TS plugin at ``src`` into a raw wasm module (no manifest)."""
    start = entry(src)
    plugin = src.stem if src.is_file() else src.name
    if start is None:
        raise BuildError(f"{src}: no plugin entry found (plugin.js, plugin.ts, index.js, ... "
                         f"or package.json \"main\")", plugin=plugin, toolchain=LANGUAGE)
    work.mkdir(parents=True, exist_ok=True)
    text = start.read_text(encoding="utf-8")
    project = src if src.is_dir() else None
    rt = evaluate.load_runtime(ensure_runtime())
    if start.suffix in (".ts", ".mts"):
        typecheck(ensure_tsc(project), start, project, locations.sdk_dir("js") / "index.d.ts",
                  work, plugin)
        source = bundle(start, project, work)
        exported = evaluate.load_exports(rt, source, plugin)
    else:
        # Plain JS is tried as is, so a file importing only "omnicore" never needs esbuild
        # (however its comments and strings look); the runtime refuses any other import.
        source = text.encode()
        try:
            exported = evaluate.load_exports(rt, source, plugin)
        except BuildError as exc:
            if FOREIGN_IMPORT not in str(exc):
                raise
            source = bundle(start, project, work)
            exported = evaluate.load_exports(rt, source, plugin)
    handlers = [n for n in exported if n != "default" and not n.startswith(("_", "omni_"))]
    if "memory" in handlers:
        raise BuildError(f"{start.name} exports a function named 'memory': that wasm export "
                         f"name is the plugin's linear memory; rename the handler",
                         plugin=plugin, toolchain=LANGUAGE)
    if not handlers:
        raise BuildError(f"{start.name} exports no handler: write `export function greet(input) "
                         f"{{ ... }}`", plugin=plugin, toolchain=LANGUAGE)
    if len(handlers) > MAX_HANDLERS:
        raise BuildError(f"{start.name} exports {len(handlers)} functions; a JS plugin has at "
                         f"most {MAX_HANDLERS} handlers", plugin=plugin, toolchain=LANGUAGE)
    used = used_capabilities(source.decode("utf-8", "replace"))
    mask = sum(1 << i for i, name in enumerate(CAPABILITIES) if name in used)
    drop = {f"omnicore:{name}" for name in CAPABILITIES if name not in used}
    rename = {f"omni_h{i}": name for i, name in enumerate(handlers)}
    unused = {f"omni_h{i}" for i in range(len(handlers), MAX_HANDLERS)}
    unused |= {"omni_js_exports", "omni_js_compile", "omni_js_region_ptr", "omni_js_region_cap"}
    code = evaluate.bytecode(rt, source, plugin)
    region = evaluate.pack_region(code, handlers, mask | evaluate.BYTECODE)
    if len(region) > rt.region_cap:
        raise BuildError(f"the compiled plugin is {len(code)} bytes; the JS runtime holds at "
                         f"most {rt.region_cap - 17} (drop unused dependencies)",
                         plugin=plugin, toolchain=LANGUAGE)
    snapshot = evaluate.snapshot(rt, region, plugin) if SNAPSHOT else None
    if snapshot is None:
        unused.add("omni_js_resume")
        return rewrite(rt.wasm, sites=rt.sites, drop_modules=drop, rename=rename,
                       drop_exports=unused, data=[(rt.region_ptr, region)])
    segments, pages = snapshot
    rename["omni_js_resume"] = "_initialize"  # the heap is ready; only reseed per instance
    unused.add("_initialize")
    return rewrite(rt.wasm, sites=rt.sites, drop_modules=drop, rename=rename,
                   drop_exports=unused, data=segments, replace_data=True, memory_pages=pages)
