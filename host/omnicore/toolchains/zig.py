"""Zig plugins: ``plugin.zig`` on ``sdk/zig/omnicore.zig``, built as a WASI reactor.

One ``zig build-exe`` compiles the plugin with the SDK as the module ``omnicore``::

    zig build-exe -target wasm32-wasi -fno-entry -mexec-model=reactor -rdynamic -O ReleaseSmall
        --dep omnicore -Mroot=plugin.zig -Momnicore=<sdk/zig>/omnicore.zig

``-rdynamic`` keeps every ``@export`` (the handlers, ``omni_alloc``/``omni_free`` and the
``omni_describe_NAME`` exports the build reads schemas from). The compiler is PyPI's
``ziglang`` (the set-up installs it into ``build/zig``); ``OMNICORE_ZIG`` names another.
``omnicore test`` compiles the same root's tests for wasm32-wasi (``zig test -target
wasm32-wasi -rdynamic --test-no-exec``: the build's own compiler and target, so a test sees
what the plugin will, and a compile error is zig's own message) and runs the program once on
the test host of :mod:`omnicore.toolchains.testrunner`, as C's tests are: the capabilities'
own code, the test's control through ``omnicore:testing`` (the SDK's ``omni.testing.Host``).
``python -m omnicore.toolchains.zig SRC [NAME...]`` does both; a NAME is a ``--test-filter``.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import sys
from pathlib import Path

from omnicore.errors import BuildError
from omnicore.toolchains import UnitTests, check_plugin_name, locations
from omnicore.toolchains.project import (
    compile_or_fail,
    compile_tests,
    runs,
    write_templates,
)
from omnicore.toolchains.testrunner import run_tests

__all__ = ["EXTENSIONS", "LANGUAGE", "build_tests", "check", "compile", "detect", "main",
           "scaffold", "unit_tests", "zig_binary"]

LANGUAGE = "zig"
EXTENSIONS = ("zig",)
FLAGS = ("-target", "wasm32-wasi", "-fno-entry", "-mexec-model=reactor", "-rdynamic",
         "-O", "ReleaseSmall")

_SCAFFOLD = Path(__file__).parent / "scaffolds" / "zig"
_BUILD_TIMEOUT_S = 300
_INSTALL = "run scripts/setup-toolchains.sh (it installs PyPI's ziglang into build/zig)"


def zig_binary() -> str | None:
    """The zig compiler: ``OMNICORE_ZIG``, PyPI's ziglang (set-up's or this Python's), PATH."""
    own = os.environ.get("OMNICORE_ZIG")
    if own:
        return own
    installed = locations.cache_dir() / "zig" / "ziglang" / "zig"
    if installed.is_file():
        return str(installed)
    spec = importlib.util.find_spec("ziglang")
    if spec is not None and spec.origin is not None:
        beside = Path(spec.origin).parent / "zig"
        if beside.is_file():
            return str(beside)
    return shutil.which("zig")


def programs() -> list[str | None]:
    return [zig_binary()]


def sdk_file() -> Path:
    return locations.sdk_dir("zig") / "omnicore.zig"


def _root(src: Path) -> Path | None:
    """The file the plugin is compiled from: ``plugin.zig``, ``main.zig`` or the only one."""
    if src.is_file():
        return src if src.suffix == ".zig" else None
    for name in ("plugin.zig", "main.zig"):
        if (src / name).is_file():
            return src / name
    files = sorted(src.glob("*.zig"))
    return files[0] if len(files) == 1 else None


def detect(src: Path) -> bool:
    """A ``.zig`` file, or a folder with ``.zig`` files at its top."""
    if src.is_file():
        return src.suffix == ".zig"
    return src.is_dir() and any(src.glob("*.zig"))


def _caches(work: Path) -> list[str]:
    # The global cache keeps Zig's compiled std for wasm32 between plugins (seconds each).
    return ["--cache-dir", str(work / "zig-cache"),
            "--global-cache-dir", str(locations.cache_dir() / "zig-cache")]


def _module_args(root: Path) -> list[str]:
    return ["--dep", "omnicore", f"-Mroot={root}", f"-Momnicore={sdk_file()}"]


@functools.cache
def _probe(zig: str) -> str | None:
    return runs([zig, "version"])


def check() -> str | None:
    """``None`` when zig runs and the SDK is there, else what to install."""
    zig = zig_binary()
    if zig is None:
        return f"zig not found; {_INSTALL}"
    if not sdk_file().is_file():
        return f"omnicore.zig is not in {sdk_file().parent}; set OMNICORE_ZIG_SDK"
    problem = _probe(zig)
    return f"{problem}; {_INSTALL}" if problem else None


def _zig_or_fail(src: Path) -> tuple[str, Path]:
    zig, root = zig_binary(), _root(src)
    if zig is None:
        raise BuildError(f"cannot build {src.name}: {check()}", plugin=src.name,
                         toolchain=LANGUAGE)
    if root is None:
        raise BuildError(f"{src}: no plugin.zig (or main.zig, or a single .zig file) to build",
                         plugin=src.name, toolchain=LANGUAGE)
    return zig, root


def compile(src: Path, work: Path) -> bytes:
    """Compile the plugin's root ``.zig`` file into one reactor module."""
    zig, root = _zig_or_fail(src)
    out = work / "plugin.wasm"
    cmd = [zig, "build-exe", *FLAGS, *_module_args(root), *_caches(work),
           f"-femit-bin={out}"]
    # zig's own message on failure: file:line:col: error: ..., with the source line and notes
    compile_or_fail(cmd, tool="zig", src=src, toolchain=LANGUAGE, timeout_s=_BUILD_TIMEOUT_S,
                    cwd=root.parent)
    return out.read_bytes()


def unit_tests(src: Path) -> UnitTests:
    """The command running the plugin's tests (the ``test`` blocks of its root file and what
    it imports): compiled for wasm32-wasi, zig writing its own diagnostics to the terminal,
    then run on the test host."""
    _zig_or_fail(src)
    return UnitTests([sys.executable, "-m", "omnicore.toolchains.zig", str(src)],
                     dict(os.environ), src if src.is_dir() else src.parent)


def build_tests(src: Path, names: list[str]) -> Path | None:
    """Compile the tests of the plugin at ``src`` (only those whose names contain a NAME, if
    any) into one wasm32-wasi program, kept per project folder between runs; None when zig
    failed (its message is on stderr)."""
    zig, root = _zig_or_fail(src)
    filters = [arg for name in names for arg in ("--test-filter", name)]
    # -rdynamic: the program exports omni_alloc (the host's §3.3 answers) and the handlers
    # (the tasks capability enqueues only the plugin's own).
    return compile_tests(src, "zig", lambda out, work: [
        zig, "test", "-target", "wasm32-wasi", "-rdynamic", "--test-no-exec", *filters,
        *_module_args(root), *_caches(work), f"-femit-bin={out}"],
        tool="zig", timeout_s=_BUILD_TIMEOUT_S, cwd=root.parent)


def scaffold(dest: Path, name: str, lang: str) -> None:
    """A new Zig plugin at ``dest`` with one handler ``greet`` and its test; it builds as is."""
    check_plugin_name(name)
    write_templates(_SCAFFOLD.iterdir(), _SCAFFOLD, dest, lambda t: t.replace("{{name}}", name))


def main(argv: list[str]) -> int:
    """``python -m omnicore.toolchains.zig SRC [NAME...]``: compile and run SRC's tests (only
    those whose names contain a NAME, if any); 0 when every test passed, 1 otherwise."""
    program = build_tests(Path(argv[0]).resolve(), argv[1:])
    return 1 if program is None else run_tests(program, [])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
