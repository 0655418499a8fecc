"""C plugins: ``*.c`` files on the header-only ``sdk/c/omnicore.h``, built as WASI reactors.

One clang call compiles and links every ``.c`` file at the top of the plugin folder::

    clang --target=wasm32-wasi -mexec-model=reactor -Os -Wl,--strip-all -I<sdk/c> *.c

Override the compiler with ``OMNICORE_CLANG`` and the header's folder with ``OMNICORE_C_SDK``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from omnicore.errors import BuildError
from omnicore.toolchains import check_plugin_name, locations
from omnicore.toolchains.project import compile_or_fail, write_templates

__all__ = [
    "EXTENSIONS",
    "FLAGS",
    "LANGUAGE",
    "check",
    "compile",
    "detect",
    "scaffold",
    "sdk_dir",
]

LANGUAGE = "c"
EXTENSIONS = ("c",)
FLAGS = ("--target=wasm32-wasi", "-mexec-model=reactor", "-Os", "-Wall", "-Wl,--strip-all")

_SCAFFOLD = Path(__file__).parent / "scaffolds" / "c"
_BUILD_TIMEOUT_S = 300


def _clang() -> str | None:
    return os.environ.get("OMNICORE_CLANG") or shutil.which("clang")


def sdk_dir() -> Path:
    """The folder holding ``omnicore.h``."""
    return locations.sdk_dir("c")


def _sources(src: Path) -> list[Path]:
    return [src] if src.is_file() else sorted(src.glob("*.c"))


def detect(src: Path) -> bool:
    """A ``.c`` file, or a folder with ``.c`` files at its top."""
    if src.is_file():
        return src.suffix == ".c"
    return src.is_dir() and any(src.glob("*.c"))


@functools.cache
def _probe(clang: str) -> str | None:
    # Compiling a tiny reactor proves the target, wasi-libc and the linker are all there.
    with tempfile.TemporaryDirectory() as tmp:
        probe = Path(tmp) / "probe.c"
        probe.write_text("#include <stdlib.h>\nvoid *f(void) { return malloc(1); }\n")
        try:
            proc = subprocess.run([clang, *FLAGS, "-o", str(Path(tmp) / "p.wasm"), str(probe)],
                                  capture_output=True, text=True, timeout=60, check=False)
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{clang} does not run ({exc})"
    if proc.returncode != 0:
        return f"{clang} cannot build wasm32-wasi reactors: {proc.stderr.strip()[-500:]}"
    return None


def check() -> str | None:
    """``None`` when clang can build wasm32-wasi reactors, else what to install."""
    install = ("run scripts/setup-toolchains.sh (Debian: apt-get install clang lld wasi-libc "
               "libclang-rt-14-dev-wasm32)")
    clang = _clang()
    if clang is None:
        return f"clang not found; {install}"
    if not (sdk_dir() / "omnicore.h").is_file():
        return f"omnicore.h is not in {sdk_dir()}; set OMNICORE_C_SDK"
    problem = _probe(clang)
    return f"{problem}; {install}" if problem else None


def compile(src: Path, work: Path) -> bytes:
    """Compile and link the plugin's ``.c`` files into one reactor module."""
    clang = _clang()
    sources = _sources(src)
    if clang is None or not sources:
        raise BuildError(f"{src}: no clang or no .c files", plugin=src.name, toolchain=LANGUAGE)
    out = work / "plugin.wasm"
    include = src if src.is_dir() else src.parent
    cmd = [clang, *FLAGS, f"-I{sdk_dir()}", f"-I{include}", "-o", str(out),
           *(str(s) for s in sources)]
    compile_or_fail(cmd, tool="clang", src=src, toolchain=LANGUAGE, timeout_s=_BUILD_TIMEOUT_S)
    return out.read_bytes()


def scaffold(dest: Path, name: str, lang: str) -> None:
    """A new C plugin at ``dest`` with one handler ``greet``; it builds as is."""
    check_plugin_name(name)
    write_templates(_SCAFFOLD.iterdir(), _SCAFFOLD, dest, lambda t: t.replace("{{name}}", name))
