"""Extism test plugins: the AssemblyScript PDK plugin built from source, the WAT ones."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import wasmtime

ROOT = Path(__file__).resolve().parents[2]
SOURCES = Path(__file__).parent / "plugins"
OUT = ROOT / "build" / "test-plugins" / "extism"
JS_TOOLS = ROOT / "build" / "js-tools" / "node_modules"
ASC = JS_TOOLS / "assemblyscript" / "bin" / "asc.js"


def pdk_plugin() -> Path:
    """tests/extism/plugins/pdk_plugin.ts built with the official AssemblyScript PDK
    (``scripts/setup-toolchains.sh`` installs assemblyscript and @extism/as-pdk)."""
    src = SOURCES / "pdk_plugin.ts"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    out = OUT / f"pdk_plugin-{digest}.wasm"
    if out.is_file():
        return out
    assert ASC.is_file(), f"{ASC} is missing: run scripts/setup-toolchains.sh"
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(f".{os.getpid()}.tmp.wasm")  # per process: test workers race
    done = subprocess.run(
        ["node", str(ASC), src.name, "-O3", "--outFile", str(tmp),
         "--use", "abort=pdk_plugin/myAbort", "--path", str(JS_TOOLS)],
        cwd=SOURCES, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"asc failed:\n{done.stdout}\n{done.stderr}"
    tmp.replace(out)
    return out


def c_plugin(name: str) -> Path:
    """tests/extism/plugins/NAME.c built with clang and wasi-libc as a WASI reactor."""
    src = SOURCES / f"{name}.c"
    digest = hashlib.sha256(src.read_bytes()).hexdigest()[:12]
    out = OUT / f"{name}-{digest}.wasm"
    if out.is_file():
        return out
    OUT.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.wasm")
    done = subprocess.run(
        ["clang", "--target=wasm32-wasi", "-mexec-model=reactor", "-O2", "-Wall",
         "-Wl,--strip-all", "-o", str(tmp), str(src)],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"clang failed:\n{done.stdout}\n{done.stderr}"
    tmp.replace(out)
    return out


def wat_plugin(name: str) -> bytes:
    """A hand-written Extism plugin from tests/extism/plugins/NAME.wat."""
    return bytes(wasmtime.wat2wasm((SOURCES / f"{name}.wat").read_text()))
