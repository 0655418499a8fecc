"""Kotlin plugins: ``plugin.kt`` (and the folder's other ``.kt`` files) on ``sdk/kotlin``,
compiled by Kotlin/Wasm for WASI into one core module that uses Wasm GC.

npm's ``kotlin-compiler`` (JetBrains' compiler distribution, pinned to 2.4.20: the SDK's arena
reaches an internal of its standard library) ships ``kotlinc-wasm`` and the WASI standard
library; it runs on a JDK (Debian's ``openjdk-17-jdk-headless``). The set-up installs both
(``build/kotlin-tools``); ``OMNICORE_KOTLIN_HOME`` names another compiler home. Two steps, as
the compiler wants (K2 makes a klib, then links it)::

    kotlinc-wasm -Xwasm-target=wasm-wasi -Xwasm-use-traps-instead-of-exceptions
        -libraries kotlin-stdlib-wasm-wasi.klib -ir-output-dir W -ir-output-name plugin
        sdk/kotlin/src/*.kt plugin.kt ...
    kotlinc-wasm ... -Xinclude=W/plugin.klib -Xir-produce-js -ir-output-dir W/out

then ``wasm-opt -O3`` (binaryen, installed from npm with the JS tools) shrinks it (715 KB to
71 KB for the greeter) and drops the host functions the plugin never calls, so it imports only
the capabilities it uses. Traps instead of exceptions keep the exception proposal off in the
engine (specs/security.md "Wasm GC"); a ``throw`` is a trap.

``omnicore test``: the ``@Test`` functions of the project's ``tests/*.kt`` (found in their
text: Kotlin/Wasm has no reflection), compiled with the plugin's sources, the SDK and its
``omnicore.testing`` package (``sdk/kotlin/testing``) and a ``main`` written here that lists
or runs one of them, by the same compiler and flags (no ``wasm-opt``: a test program keeps
every import, and the test host serves them all). The program runs on the one test host,
each test alone in a fresh instance, by AssemblyScript's runner (``testhost.astest``: the
same ``--list``/``--run I`` protocol)::

    python -m omnicore.toolchains.kotlin SRC [NAME-PART...]
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import sys
from pathlib import Path

from omnicore.errors import BuildError
from omnicore.toolchains import UnitTests, check_plugin_name, locations
from omnicore.toolchains.project import compile_or_fail, compile_tests, runs, write_templates

__all__ = ["EXTENSIONS", "LANGUAGE", "build_tests", "check", "compile", "detect", "kotlin_home",
           "scaffold", "test_names", "unit_tests", "wasm_opt"]

LANGUAGE = "kotlin"
EXTENSIONS = ("kotlin", "kt")
#: What the scaffold imports: greet reads config, check fetches over http and counts in kv.
SCAFFOLD_GRANTS = ("config", "kv", "http")
#: Wasm GC and typed references, as the engine runs them; no exceptions, threads or SIMD.
WASM_OPT_FEATURES = ("--enable-gc", "--enable-reference-types", "--enable-bulk-memory",
                     "--enable-nontrapping-float-to-int", "--enable-sign-ext",
                     "--enable-mutable-globals")
FLAGS = ("-Xwasm-target=wasm-wasi", "-Xwasm-use-traps-instead-of-exceptions", "-nowarn")
#: The JVM the compiler runs on, told to stop at its first JIT tier: a kotlinc-wasm run is a
#: short-lived process that spends most of its CPU warming up, and C2's compiles of the
#: compiler's own code never pay back in it. Half the CPU of a build (the greeter's two steps:
#: 37 s against 73 on two loaded cores), the same module.
JVM_FLAGS = ("-J-XX:TieredStopAtLevel=1",)

_SCAFFOLD = Path(__file__).parent / "scaffolds" / "kotlin"
_BUILD_TIMEOUT_S = 600
_INSTALL = ("run scripts/setup-toolchains.sh (it installs npm's kotlin-compiler@2.4.20 into "
            "build/kotlin-tools and Debian's openjdk-17-jdk-headless)")


def kotlin_home() -> Path | None:
    """The compiler's home (``bin/kotlinc-wasm``, ``lib/``): ``OMNICORE_KOTLIN_HOME``, else the
    set-up's ``build/kotlin-tools``."""
    own = os.environ.get("OMNICORE_KOTLIN_HOME")
    home = Path(own) if own else (
        locations.cache_dir() / "kotlin-tools" / "node_modules" / "kotlin-compiler")
    return home if (home / "bin" / "kotlinc-wasm").is_file() else None


def wasm_opt() -> Path | None:
    """binaryen's ``wasm-opt``, as npm installed it with the JS tools."""
    found = locations.cache_dir() / "js-tools" / "node_modules" / "binaryen" / "bin" / "wasm-opt"
    return found if found.is_file() else None


def programs() -> list[str | None]:
    home = kotlin_home()
    opt = wasm_opt()
    return [str(home / "bin" / "kotlinc-wasm") if home else None,
            str(opt) if opt else None, shutil.which("java")]


def sdk_sources() -> list[Path]:
    return sorted((locations.sdk_dir("kotlin") / "src").glob("*.kt"))


def testing_sources() -> list[Path]:
    """The SDK's ``omnicore.testing`` package: compiled into test programs only."""
    return sorted((locations.sdk_dir("kotlin") / "testing").glob("*.kt"))


def _sources(src: Path) -> list[Path]:
    if src.is_file():
        return [src] if src.suffix == ".kt" else []
    return sorted(src.glob("*.kt"))


def detect(src: Path) -> bool:
    """A ``.kt`` file, or a folder with ``.kt`` files at its top."""
    return bool(_sources(src))


@functools.cache
def _probe(java: str) -> str | None:
    return runs([java, "-version"])


def check() -> str | None:
    """``None`` when the compiler, a JDK, wasm-opt and the SDK are there, else what to do."""
    java = shutil.which("java")
    if java is None:
        return f"java not found (a JDK runs the Kotlin compiler); {_INSTALL}"
    if kotlin_home() is None:
        return f"kotlinc-wasm not found; {_INSTALL}"
    if wasm_opt() is None:
        return ("wasm-opt not found (binaryen, installed into build/js-tools with the JS "
                "tools); run scripts/setup-toolchains.sh")
    if not sdk_sources():
        return (f"the Kotlin SDK is not in {locations.sdk_dir('kotlin')}; set "
                "OMNICORE_KOTLIN_SDK")
    problem = _probe(java)
    return f"{problem}; {_INSTALL}" if problem else None


def compile(src: Path, work: Path) -> bytes:
    """Compile the folder's ``.kt`` files with the SDK's into one module, then ``wasm-opt``."""
    problem = check()
    if problem:
        raise BuildError(f"cannot build {src.name}: {problem}", plugin=src.name,
                         toolchain=LANGUAGE)
    sources = _sources(src)
    if not sources:
        raise BuildError(f"{src}: no .kt files to build", plugin=src.name, toolchain=LANGUAGE)
    home = kotlin_home()
    opt = wasm_opt()
    assert home is not None and opt is not None  # check() said so
    kotlinc = str(home / "bin" / "kotlinc-wasm")
    stdlib = home / "lib" / "kotlin-stdlib-wasm-wasi.klib"
    klib_dir, out_dir = work / "klib", work / "out"
    for folder in (klib_dir, out_dir):
        shutil.rmtree(folder, ignore_errors=True)
    common = [kotlinc, *JVM_FLAGS, *FLAGS, "-libraries", str(stdlib)]
    cwd = src if src.is_dir() else src.parent
    # kotlinc's own message on failure: file:line:col: error: ...
    compile_or_fail([*common, "-ir-output-dir", str(klib_dir), "-ir-output-name", "plugin",
                     *map(str, sdk_sources()), *map(str, sources)],
                    tool="kotlinc-wasm", src=src, toolchain=LANGUAGE,
                    timeout_s=_BUILD_TIMEOUT_S, cwd=cwd)
    compile_or_fail([*common, f"-Xinclude={klib_dir / 'plugin.klib'}", "-Xir-produce-js",
                     "-ir-output-dir", str(out_dir), "-ir-output-name", "plugin"],
                    tool="kotlinc-wasm", src=src, toolchain=LANGUAGE,
                    timeout_s=_BUILD_TIMEOUT_S, cwd=cwd)
    raw, optimized = out_dir / "plugin.wasm", work / "plugin.wasm"
    compile_or_fail([str(opt), "-O3", *WASM_OPT_FEATURES, "--closed-world", str(raw),
                     "-o", str(optimized)],
                    tool="wasm-opt", src=src, toolchain=LANGUAGE, timeout_s=_BUILD_TIMEOUT_S,
                    cwd=cwd)
    return optimized.read_bytes()


_TEST = re.compile(r"@Test\s+(?:(?:public|internal)\s+)?fun\s+(`[^`\r\n]+`|[A-Za-z_]\w*)\s*\(\s*\)")
_PACKAGE = re.compile(r"^\s*package\s+([\w.]+)", re.MULTILINE)
_NO_TESTS = "no tests: mark top-level functions @Test (omnicore.testing.Test) in tests/*.kt"


def _test_files(src: Path) -> list[Path]:
    return sorted((src / "tests").glob("*.kt")) if src.is_dir() else []


def test_names(src: Path) -> list[tuple[str, str]]:
    """The project's tests in file and source order: (name as shown, Kotlin reference)."""
    found = []
    for path in _test_files(src):
        text = path.read_text(encoding="utf-8")
        package = _PACKAGE.search(text)
        prefix = f"{package[1]}." if package else ""
        for match in _TEST.finditer(text):
            fun = match[1]
            found.append((fun.strip("`"), prefix + fun))
    return found


def _main(tests: list[tuple[str, str]]) -> str:
    entries = "".join(f"    {_kotlin_string(name)} to {{ {ref}() }},\n" for name, ref in tests)
    return ("// Written by omnicore test: the program's main lists or runs one test.\n"
            "fun main() = omnicore.testing.runTests(listOf<Pair<String, () -> Unit>>(\n"
            f"{entries}))\n")


def _kotlin_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def unit_tests(src: Path) -> UnitTests:
    """The command running the plugin's tests (``@Test`` functions in ``tests/*.kt``): compiled
    by kotlinc-wasm, its own diagnostics on the terminal, then run on the test host."""
    if not test_names(src):
        raise BuildError(f"{src.name}: {_NO_TESTS}", plugin=src.name, toolchain=LANGUAGE)
    return UnitTests([sys.executable, "-m", "omnicore.toolchains.kotlin", str(src)],
                     dict(os.environ), src if src.is_dir() else src.parent)


def build_tests(src: Path) -> Path | None:
    """Compile the plugin at ``src`` with its tests into one WASI program (kept per project
    between runs); None when kotlinc-wasm failed (its message is on stderr)."""
    problem = check()
    if problem:
        raise BuildError(f"cannot test {src.name}: {problem}", plugin=src.name,
                         toolchain=LANGUAGE)
    home = kotlin_home()
    assert home is not None
    kotlinc = str(home / "bin" / "kotlinc-wasm")
    common = [kotlinc, *JVM_FLAGS, *FLAGS, "-libraries",
              str(home / "lib" / "kotlin-stdlib-wasm-wasi.klib")]

    def steps(out: Path, work: Path) -> list[list[str]]:
        main = work / "omnicore_tests_main.kt"
        main.write_text(_main(test_names(src)), encoding="utf-8")
        klib, linked = work / "klib", work / "out"
        for folder in (klib, linked):
            shutil.rmtree(folder, ignore_errors=True)
        sources = [*sdk_sources(), *testing_sources(), *_sources(src), *_test_files(src), main]
        # The linked program lands in out/ under its -ir-output-name; tests.wasm is it.
        return [[*common, "-ir-output-dir", str(klib), "-ir-output-name", "tests",
                 *map(str, sources)],
                [*common, f"-Xinclude={klib / 'tests.klib'}", "-Xir-produce-js",
                 "-ir-output-dir", str(linked), "-ir-output-name", "tests"],
                [sys.executable, "-c", "import shutil, sys; shutil.copyfile(*sys.argv[1:])",
                 str(linked / "tests.wasm"), str(out)]]

    return compile_tests(src, LANGUAGE, steps, tool="kotlinc-wasm", timeout_s=_BUILD_TIMEOUT_S,
                         cwd=src)


def main(argv: list[str]) -> int:
    """``python -m omnicore.toolchains.kotlin SRC [NAME-PART...]``: compile and run SRC's
    tests (those whose names contain a NAME-PART, if any); 0 when every test passed."""
    import logging

    from omnicore.toolchains.testhost.astest import run_astest
    from omnicore.toolchains.testhost.program import Program

    program_path = build_tests(Path(argv[0]).resolve())
    if program_path is None:
        return 1
    # A plugin's log lines are the test's to read (Host.logs()), not this process's output.
    logging.getLogger("omnicore.plugin").addHandler(logging.NullHandler())
    logging.getLogger("omnicore.plugin").propagate = False
    program = Program(program_path)
    try:
        return run_astest(program, argv[1:], none=_NO_TESTS)
    finally:
        program.close()


def scaffold(dest: Path, name: str, lang: str) -> None:
    """A new Kotlin plugin at ``dest`` with handlers ``greet`` and ``check`` and their tests
    (``tests/``); it builds and tests as is."""
    check_plugin_name(name)
    write_templates((p for p in _SCAFFOLD.rglob("*") if p.is_file()), _SCAFFOLD, dest,
                    lambda t: t.replace("{{name}}", name))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
