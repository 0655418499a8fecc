"""AssemblyScript plugins: an ``asconfig.json`` beside the sources, on ``sdk/assemblyscript``.

npm's ``assemblyscript`` compiler (``asc``, installed by the set-up into ``build/js-tools``, or
``OMNICORE_ASC``) builds the entries of ``asconfig.json`` (default ``plugin.ts``) with the SDK's
``exports.ts`` (the ``omni_alloc``/``omni_free`` pair) as a second entry::

    node asc.js plugin.ts <sdk>/exports.ts -O3 --runtime minimal --path <work>/path
        --use abort=~lib/omnicore/index/omniAbort

``--path`` resolves ``import ... from "omnicore"`` to the SDK; ``--use abort=`` replaces the
``env.abort`` import the host would refuse with the SDK's, which logs and traps. The project's
``asconfig.json`` options (``optimizeLevel``, ``runtime``, ...) apply; the target, entries
and abort are the toolchain's.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from omnicore.errors import BuildError
from omnicore.toolchains import UnitTests, check_plugin_name, locations
from omnicore.toolchains.project import compile_or_fail, write_templates

__all__ = ["EXTENSIONS", "LANGUAGE", "check", "compile", "detect", "scaffold", "unit_tests"]

LANGUAGE = "assemblyscript"
EXTENSIONS = ("assemblyscript", "as")
CONFIG = "asconfig.json"
FLAGS = ("-O3", "--use", "abort=~lib/omnicore/index/omniAbort")
#: The runtime unless asconfig.json's options name one: the SDK collects at the end of each
#: call, which is cheaper than the incremental GC's steps on every allocation.
RUNTIME = "minimal"

_SCAFFOLD = Path(__file__).parent / "scaffolds" / "assemblyscript"
_BUILD_TIMEOUT_S = 300
_INSTALL = ("run scripts/setup-toolchains.sh (npm install assemblyscript@0.28 into "
            "build/js-tools)")


def asc() -> Path:
    """``asc.js`` of npm's assemblyscript: ``OMNICORE_ASC``, else the set-up's."""
    own = os.environ.get("OMNICORE_ASC")
    if own:
        return Path(own)
    return locations.cache_dir() / "js-tools" / "node_modules" / "assemblyscript" / "bin" / "asc.js"


def programs() -> list[str | None]:
    return [str(asc())]


def sdk_dir() -> Path:
    return locations.sdk_dir("assemblyscript")


def detect(src: Path) -> bool:
    """A folder with an ``asconfig.json`` (AssemblyScript's own project file)."""
    return src.is_dir() and (src / CONFIG).is_file()


def check() -> str | None:
    """``None`` when node and asc are there with the SDK, else what to install."""
    if shutil.which("node") is None:
        return "node not found: AssemblyScript's compiler runs on Node.js (apt-get install nodejs)"
    if not asc().is_file():
        return f"the AssemblyScript compiler is not at {asc()}; {_INSTALL}"
    if not (sdk_dir() / "index.ts").is_file():
        return f"the AssemblyScript SDK is not in {sdk_dir()}; set OMNICORE_ASSEMBLYSCRIPT_SDK"
    return None


def _config(src: Path) -> dict[str, Any]:
    try:
        config = json.loads((src / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BuildError(f"{src / CONFIG}: {exc}", plugin=src.name, toolchain=LANGUAGE) from exc
    if not isinstance(config, dict):
        raise BuildError(f"{src / CONFIG}: not a JSON object", plugin=src.name,
                         toolchain=LANGUAGE)
    return config


def _entries(src: Path, config: dict[str, Any]) -> list[str]:
    entries = config.get("entries") or ["plugin.ts"]
    missing = [e for e in entries if not (src / e).is_file()]
    if missing:
        raise BuildError(f"{src / CONFIG}: entry {missing[0]} does not exist", plugin=src.name,
                         toolchain=LANGUAGE)
    return [str(e) for e in entries]


def compile(src: Path, work: Path) -> bytes:
    """Compile the project's entries and the SDK's exports into one module."""
    config = _config(src)
    options = config.get("options")
    runtime = [] if isinstance(options, dict) and "runtime" in options else ["--runtime", RUNTIME]
    return _asc(src, work, [*_entries(src, config), str(sdk_dir() / "exports.ts")],
                [*runtime, "--config", CONFIG])


def _asc(src: Path, work: Path, entries: list[str], flags: list[str]) -> bytes:
    node = shutil.which("node")
    if node is None or not asc().is_file():
        raise BuildError(f"cannot build {src.name}: {check()}", plugin=src.name,
                         toolchain=LANGUAGE)
    # asc resolves a package "omnicore" below each --path folder: link the SDK in there.
    path = work / "path"
    path.mkdir(parents=True, exist_ok=True)
    link = path / "omnicore"
    if link.is_symlink() and link.resolve() != sdk_dir().resolve():
        link.unlink()
    if not link.exists():
        link.symlink_to(sdk_dir().resolve(), target_is_directory=True)
    out = work / "plugin.wasm"
    cmd = [node, str(asc()), *entries, *FLAGS, *flags, "--path", str(path), "--outFile", str(out)]
    # asc's own diagnostics on failure: ERROR TS2304: Cannot find name 'x'. with the line
    proc = compile_or_fail(cmd, tool="asc", src=src, toolchain=LANGUAGE,
                           timeout_s=_BUILD_TIMEOUT_S, cwd=src)
    if not out.is_file():
        raise BuildError(f"asc failed for {src}:\n{(proc.stderr or proc.stdout).strip()[-4000:]}",
                         plugin=src.name, toolchain=LANGUAGE)
    return out.read_bytes()


def unit_tests(src: Path) -> UnitTests:
    """The project's entries and ``*.test.ts`` built with ``omnicore/testing`` into one
    wasm32-wasi program, run by :mod:`omnicore.toolchains.testhost.astest` on omnicore's test
    host (the capabilities' own code over in-memory services), each test in a fresh instance."""
    files = sorted(str(p.relative_to(src)) for p in src.glob("*.test.ts"))
    if not files:
        raise BuildError(f"{src}: no test files (plugin.test.ts; `omnicore new plugin --lang "
                         f"assemblyscript` writes one)", plugin=src.name, toolchain=LANGUAGE)
    work = locations.cache_dir() / "as-test" / hashlib.sha256(str(src).encode()).hexdigest()[:16]
    work.mkdir(parents=True, exist_ok=True)
    # The entries too, so their handlers are exports (tasks.enqueue names one). The incremental
    # runtime: the tests keep values in locals across handler calls, which the minimal
    # runtime's end-of-call collection would not see.
    entries = [e for e in _entries(src, _config(src)) if e not in files]
    wasm = _asc(src, work, [*entries, *files, str(sdk_dir() / "testing_exports.ts")],
                ["--runtime", "incremental", "--debug"])
    tests = work / "tests.wasm"
    tests.write_bytes(wasm)
    return UnitTests([sys.executable, "-m", "omnicore.toolchains.testhost.astest", str(tests)],
                     dict(os.environ), src)


def scaffold(dest: Path, name: str, lang: str) -> None:
    """A new AssemblyScript plugin at ``dest`` with one handler ``greet``; it builds as is."""
    check_plugin_name(name)
    write_templates(_SCAFFOLD.iterdir(), _SCAFFOLD, dest, lambda t: t.replace("{{name}}", name))
