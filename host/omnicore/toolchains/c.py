"""C plugins: ``*.c`` files on the header-only ``sdk/c/omnicore.h``, built as WASI reactors.

One clang call compiles and links every ``.c`` file at the top of the plugin folder::

    clang --target=wasm32-wasi -mexec-model=reactor -Os -Wl,--strip-all -I<sdk/c> *.c

Override the compiler with ``OMNICORE_CLANG`` and the header's folder with ``OMNICORE_C_SDK``.

``omnicore test`` compiles the same ``.c`` files with every ``.c`` file in the plugin's
``tests/`` folder into one wasm32-wasi program (``-DOMNI_TESTING``, ``omnicore_test.h``'s
tests and ``_start``) and runs it on the one test host with
:mod:`omnicore.toolchains.testrunner`: every capability the plugin imports is the host's own
code over in-memory services; the test's HTTP and SQL answers are handed to it just before
each request (``python -m omnicore.toolchains.c SRC [NAME...]`` does both). The build's own
compiler and target, so a test sees what the plugin will, and a compile error is clang's own
message.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from omnicore.errors import BuildError
from omnicore.toolchains import UnitTests, check_plugin_name, locations
from omnicore.toolchains.project import compile_or_fail, compile_tests, write_templates
from omnicore.toolchains.testrunner import run_tests

__all__ = [
    "EXTENSIONS",
    "FLAGS",
    "LANGUAGE",
    "build_tests",
    "check",
    "compile",
    "detect",
    "main",
    "run_tests",
    "scaffold",
    "sdk_dir",
    "unit_tests",
]

LANGUAGE = "c"
EXTENSIONS = ("c",)
FLAGS = ("--target=wasm32-wasi", "-mexec-model=reactor", "-Os", "-Wall", "-Wl,--strip-all")
#: The test program: the same target, a reactor too (the host calls its omni_alloc for the
#: answers it allocates; a command would run its constructors again at every such call); its
#: _start, calling main, is omnicore_test.h's.
TEST_FLAGS = ("--target=wasm32-wasi", "-mexec-model=reactor", "-O1", "-Wall", "-DOMNI_TESTING")

_SCAFFOLD = Path(__file__).parent / "scaffolds" / "c"
_BUILD_TIMEOUT_S = 300


def _clang() -> str | None:
    return os.environ.get("OMNICORE_CLANG") or shutil.which("clang")


def programs() -> list[str | None]:
    return [_clang()]


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


def _tests(src: Path) -> list[Path]:
    return sorted((src / "tests").glob("*.c")) if src.is_dir() else []


def unit_tests(src: Path) -> UnitTests:
    """The command running the plugin's tests (``tests/*.c`` on ``omnicore_test.h``): it
    compiles them with the plugin's sources into one wasm32-wasi program, clang writing its
    own diagnostics to the terminal as ``zig test`` or ``cargo test`` would, then runs it."""
    if _clang() is None or not _sources(src):
        raise BuildError(f"{src}: no clang or no .c files", plugin=src.name, toolchain=LANGUAGE)
    if not _tests(src):
        raise BuildError(f"{src.name}: no tests: add tests/*.c files that #include "
                         "\"omnicore_test.h\" and define OMNI_TEST(name) { ... } (sdk/c/README.md)",
                         plugin=src.name, toolchain=LANGUAGE)
    return UnitTests([sys.executable, "-m", "omnicore.toolchains.c", str(src)],
                     dict(os.environ), src)


def build_tests(src: Path) -> Path | None:
    """Compile the tests of the plugin at ``src`` with its sources into one program (kept
    per project folder between runs); None when clang failed (its message is on stderr)."""
    clang = _clang()
    assert clang is not None
    return compile_tests(src, "c", lambda out, _work: [
        clang, *TEST_FLAGS, f"-I{sdk_dir()}", f"-I{src}", "-o", str(out),
        *(str(s) for s in [*_sources(src), *_tests(src)])], tool="clang",
        timeout_s=_BUILD_TIMEOUT_S)


def scaffold(dest: Path, name: str, lang: str) -> None:
    """A new C plugin at ``dest`` with one handler ``greet`` and its tests (``tests/``); it
    builds and tests as is."""
    check_plugin_name(name)
    write_templates((p for p in _SCAFFOLD.rglob("*") if p.is_file()), _SCAFFOLD, dest,
                    lambda t: t.replace("{{name}}", name))


def main(argv: list[str]) -> int:
    """``python -m omnicore.toolchains.c SRC [NAME...]``: compile and run SRC's tests (only
    those NAMEd, if any); the number of failed tests as the exit status, 1 when clang
    failed."""
    program = build_tests(Path(argv[0]).resolve())
    return 1 if program is None else run_tests(program, argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
