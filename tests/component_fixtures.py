"""Test components, built at test time from tests/sandbox/components/.

``types`` is JavaScript built with componentize-qjs (``scripts/setup-toolchains.sh`` installs
it into build/js-tools); the others are WAT components assembled by wasm-tools (PyPI's
``wasm-tools``, in the venv). Each build is cached by the digest of its sources.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = Path(__file__).parent / "sandbox" / "components"
OUT = ROOT / "build" / "test-plugins" / "components"
COMPONENTIZE_QJS = ROOT / "build" / "js-tools" / "node_modules" / ".bin" / "componentize-qjs"


def _cached(name: str, sources: list[Path]) -> tuple[Path, Path]:
    digest = hashlib.sha256(b"".join(p.read_bytes() for p in sources)).hexdigest()[:12]
    out = OUT / f"{name}-{digest}.wasm"
    OUT.mkdir(parents=True, exist_ok=True)
    # One temporary file per process: test workers may build the same component at once,
    # and each rename into place is atomic.
    return out, out.with_suffix(f".{os.getpid()}.tmp.wasm")


def js_component(name: str = "types") -> Path:
    """NAME.js with NAME.wit (or the WIT folder NAME/, with deps/) built by componentize-qjs
    (a synchronous component)."""
    wit, js = SOURCES / f"{name}.wit", SOURCES / f"{name}.js"
    if not wit.exists():
        wit = SOURCES / name
    wits = sorted(wit.rglob("*.wit")) if wit.is_dir() else [wit]
    out, tmp = _cached(name, [*wits, js])
    if out.is_file():
        return out
    if not COMPONENTIZE_QJS.exists():
        pytest.skip(f"{COMPONENTIZE_QJS} is missing: run scripts/setup-toolchains.sh")
    done = subprocess.run([str(COMPONENTIZE_QJS), "--sync", "--wit", str(wit), "--js", str(js),
                           "-o", str(tmp)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"componentize-qjs failed:\n{done.stdout}\n{done.stderr}"
    tmp.replace(out)
    return out


def wat_component(name: str) -> Path:
    """NAME.wat assembled into a component by wasm-tools."""
    src = SOURCES / f"{name}.wat"
    out, tmp = _cached(name, [src])
    if out.is_file():
        return out
    tool = shutil.which("wasm-tools") or str(Path(sys.executable).parent / "wasm-tools")
    done = subprocess.run([tool, "parse", str(src), "-o", str(tmp)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, f"wasm-tools parse failed:\n{done.stderr}"
    tmp.replace(out)
    return out


def wat_plugin(name: str, manifest: dict[str, object]) -> Path:
    """NAME.wat assembled by wasm-tools with ``manifest`` as its ``omnicore.manifest``
    section (an omnicore plugin component)."""
    from omnicore.sandbox.manifest import MANIFEST_SECTION
    from omnicore.sandbox.wasmbin import set_custom_section

    text = json.dumps(manifest, sort_keys=True).encode()
    src = SOURCES / f"{name}.wat"
    out, tmp = _cached(f"{name}-plugin", [src])
    out = out.with_name(out.stem + "-" + hashlib.sha256(text).hexdigest()[:8] + ".wasm")
    if not out.is_file():
        tmp.write_bytes(set_custom_section(wat_component(name).read_bytes(), MANIFEST_SECTION,
                                           text))
        tmp.replace(out)
    return out


PYTHON_SOURCES = Path(__file__).parent / "sdk"


def python_plugin(name: str = "python_probe") -> Path:
    """tests/sdk/NAME (a Python plugin project) built by ``omnicore build``'s toolchain
    (componentize-py, ~10-30 s); the build is skipped while its sources are unchanged."""
    from omnicore.toolchains import build, python

    problem = python.check()
    if problem:
        pytest.skip(problem)
    return build(PYTHON_SOURCES / name, OUT / "python")
