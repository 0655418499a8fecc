"""Building plugins from source: one module per language, one face for all.

A language module (``rust.py``, ``go.py``, ``js/``, ``c.py``) provides::

    LANGUAGE: str                   # "rust"
    EXTENSIONS: tuple[str, ...]     # what `omnicore new plugin --lang` accepts
    def detect(src: Path) -> bool   # is this folder (or file) a plugin in my language?
    def check() -> str | None       # None when the toolchain works, else what to install
    def compile(src: Path, work: Path) -> bytes            # the raw module; BuildError
    def scaffold(dest: Path, name: str, lang: str) -> None  # a project that builds as is
    def unit_tests(src: Path) -> UnitTests                  # optional: the native tests
    def lint(src: Path) -> None     # optional: checks of the sources (python: constant SQL
                                    # statements); BuildError. Build and test run it first.
    def programs() -> list[str | None]  # optional: the compilers it runs (their identity is
                                        # part of the build cache's key)

:func:`build` adds the ``omnicore.manifest`` section from ``omnicore.toml`` and skips the work
when no source changed since the last build into that folder. A build is also kept in a
content-addressed cache (``<cache_dir>/built/``, :func:`_key`): the same sources built by
the same build code, SDK and compilers under the same name are copied from there, whichever
folder they are built into (a second checkout, a test's temporary folder, another worker).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from omnicore.errors import BuildError
from omnicore.toolchains import locations
from omnicore.toolchains.manifest import embed_manifest, read_plugin_meta

__all__ = ["LANGUAGES", "SKIP_DIRS", "BuildResult", "UnitTests", "build", "build_all",
           "check_plugin_name", "discover", "language_for", "scaffold", "scaffold_grants",
           "unit_tests"]

# AssemblyScript's sources are .ts too: it is asked before js (its asconfig.json decides).
LANGUAGES: tuple[str, ...] = ("rust", "go", "assemblyscript", "js", "c", "python", "zig")
# Ruby (issue 37), in its own line so the languages landing beside it merge cleanly.
LANGUAGES += ("ruby",)
# Kotlin/Wasm (issue 64): a core module with Wasm GC.
LANGUAGES += ("kotlin",)
#: Folders that are never a project's sources (build output, dependencies, VCS, virtualenvs):
#: not hashed into a build's digest, not searched for projects, not watched by `omnicore dev`.
SKIP_DIRS = frozenset({"target", "node_modules", ".git", "build", "__pycache__", ".venv",
                       "venv"})


def _module(language: str) -> ModuleType:
    return importlib.import_module(f"omnicore.toolchains.{language}")


def language_for(src: Path) -> str:
    """The language of the plugin project at ``src``."""
    for language in LANGUAGES:
        if _module(language).detect(src):
            return language
    raise BuildError(f"{src}: not a plugin project (no Cargo.toml, go.mod, package.json/"
                     f"plugin.js/plugin.ts, asconfig.json, *.c, *.zig, plugin.py, plugin.rb "
                     f"or *.kt found)")


def _source_digest(src: Path) -> str:
    digest = hashlib.sha256()
    files = [src] if src.is_file() else sorted(
        p for p in src.rglob("*") if p.is_file() and not SKIP_DIRS & set(p.relative_to(src).parts))
    for path in files:
        digest.update(str(path.relative_to(src) if src.is_dir() else path.name).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@functools.cache
def _toolchain_digest(language: str) -> str:
    """What besides the plugin's sources shapes its .wasm: the build code and the SDK."""
    module = _module(language)
    code = Path(str(module.__file__))
    # A language that is a package (js/) is shaped by every module in it.
    parts = [code.parent if code.name == "__init__.py" else code]
    # A language may be shaped by more SDK folders than its own (python: the WIT in sdk/wit).
    for folder in getattr(module, "SDK_FOLDERS", (language,)):
        sdk = locations.sdk_dir(folder)
        if sdk.is_dir():
            parts.append(sdk)
    # Every build ends in the manifest writer (which runs describe exports), and a language
    # may read its sources with a helper module (python: pyschema).
    here = Path(__file__).parent
    parts.append(here / "manifest.py")
    parts += [here / f"{name}.py" for name in getattr(module, "HELPERS", ())]
    return "".join(_source_digest(p) for p in parts) + _programs_identity(module)


def _programs_identity(module: ModuleType) -> str:
    """The compilers a language runs, each by its resolved path, size and modification time: a
    compiler upgraded in place is another key (a stat each, no `--version` run)."""
    programs: Callable[[], list[str | None]] | None = getattr(module, "programs", None)
    found = []
    for program in programs() if programs is not None else []:
        try:
            real = os.path.realpath(program) if program else ""
            st = os.stat(real) if real else None
        except OSError:
            st = None
        found.append(f"{real}:{st.st_size}:{st.st_mtime_ns}" if st else f"{program}:-")
    return hashlib.sha256("\n".join(found).encode()).hexdigest() if found else ""


#: Builds the cache keeps (the least recently used go first).
BUILT_KEEP = 400


def _key(digest: str, name: str) -> str:
    """The build cache's key: the sources' and build code's digest (the SDK, the compilers'
    identity) and the name (the manifest a build embeds carries it)."""
    return hashlib.sha256(f"{digest}\n{name}".encode()).hexdigest()


def _cached(key: str) -> Path:
    return locations.cache_dir() / "built" / f"{key}.wasm"


def _keep(key: str, wasm: bytes) -> None:
    """Put a build in the cache (atomic: a reader never sees half of one), then trim the cache
    to :data:`BUILT_KEEP` entries."""
    path = _cached(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{key}.{os.getpid()}.tmp")
    tmp.write_bytes(wasm)
    tmp.replace(path)
    entries = sorted(path.parent.glob("*.wasm"), key=lambda p: p.stat().st_mtime)
    for old in entries[:max(0, len(entries) - BUILT_KEEP)]:
        old.unlink(missing_ok=True)


def build(src: Path, out_dir: Path, *, name: str | None = None, force: bool = False) -> Path:
    """Build the plugin at ``src`` into ``out_dir/NAME.wasm`` and return that path."""
    return _build(src, out_dir, name=name, force=force)[0]


def _build(src: Path, out_dir: Path, *, name: str | None, force: bool) -> tuple[Path, str]:
    """:func:`build`, and how: ``"built"``, ``"cached"`` (copied from the build cache) or
    ``"up to date"`` (the output was already this build: nothing ran)."""
    # Toolchains run in the project folder: hand them absolute paths only.
    src, out_dir = src.resolve(), out_dir.resolve()
    language = language_for(src)
    module = _module(language)
    problem = module.check()
    if problem:
        raise BuildError(f"cannot build {src.name}: {problem}", plugin=src.name, toolchain=language)
    meta = read_plugin_meta(src if src.is_dir() else src.parent)
    name = name or meta.get("name") or src.stem
    out_dir.mkdir(parents=True, exist_ok=True)
    # Two builds of one plugin into one folder (test workers, a watcher beside `omnicore
    # build`) share its work folder and stamp: the second waits, then finds it up to date.
    with locations.locked(out_dir / ".work" / f"{name}.lock"):
        return _build_locked(src, out_dir, name, language, meta, force)


def _build_locked(src: Path, out_dir: Path, name: str, language: str, meta: dict[str, Any],
                  force: bool) -> tuple[Path, str]:
    module = _module(language)
    out = out_dir / f"{name}.wasm"
    stamp = out_dir / f".{name}.src-sha256"
    digest = _source_digest(src) + _toolchain_digest(language)
    if not force and out.exists() and stamp.exists() and stamp.read_text() == digest:
        return out, "up to date"
    key = _key(digest, name)
    wasm = b"" if force else _from_cache(key)
    how = "cached"
    if not wasm:
        # Two builds of the same sources into different folders (two projects scaffolded
        # alike, two test workers) compile once: the second waits for the first's cache entry.
        # One lock per key's first byte: at most 256 files, never trimmed, and two unrelated
        # builds wait for each other once in 256.
        with locations.locked(_cached(key).with_name(f".lock-{key[:2]}")):
            wasm = b"" if force else _from_cache(key)
            if not wasm:
                how = "built"
                wasm = _compile(module, src, out_dir, name, language, meta)
                _keep(key, wasm)
    tmp = out.with_suffix(".wasm.tmp")
    tmp.write_bytes(wasm)
    tmp.replace(out)  # atomic: a watching host never sees half a file
    stamp.write_text(digest)
    return out, how


def _from_cache(key: str) -> bytes:
    """The cached build of ``key``, or ``b""``."""
    cached = _cached(key)
    try:
        wasm = cached.read_bytes()
        os.utime(cached)  # recently used: the trim keeps it
    except OSError:
        return b""
    return wasm


def _compile(module: ModuleType, src: Path, out_dir: Path, name: str, language: str,
             meta: dict[str, Any]) -> bytes:
    """Lint and compile ``src``; the module with its manifest embedded."""
    _lint(module, src)
    work = out_dir / ".work" / name
    work.mkdir(parents=True, exist_ok=True)
    raw = module.compile(src, work)
    # A language whose output is a component says what its handlers are (python).
    names: Callable[[Path], list[str]] | None = getattr(module, "handler_names", None)
    # A language whose handler types are gone from the output (a component, a JS bundle)
    # describes its handlers from the sources.
    describe: Callable[[Path], dict[str, dict[str, Any]]] | None = getattr(
        module, "handler_descriptions", None)
    return embed_manifest(raw, meta, language=language, default_name=name,
                          exported=names(src) if names is not None else None,
                          described=describe(src) if describe is not None else None)


def discover(root: Path) -> Iterator[Path]:
    """Every plugin project below ``root`` (a project's own subfolders are not searched)."""
    if _is_project(root):
        yield root
        return
    for child in sorted(root.iterdir()):
        if child.is_dir() and child.name not in SKIP_DIRS:
            yield from discover(child)


def _is_project(path: Path) -> bool:
    return path.is_dir() and any(_module(lang).detect(path) for lang in LANGUAGES)


#: A plugin's name, as its manifest must give it (sandbox/manifest.py).
_PLUGIN_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


def check_plugin_name(name: str) -> None:
    """BuildError unless a new project may be named ``name`` (every language's scaffold)."""
    if not _PLUGIN_NAME.fullmatch(name):
        raise BuildError(f"invalid plugin name {name!r}: use lowercase letters, digits, '-' "
                         f"and '_', starting with a letter or digit, at most 63 characters")


def scaffold(dest: Path, name: str, lang: str) -> None:
    """Create a new plugin project for ``lang`` (rust, go, js, ts, c or python) at ``dest``."""
    for language in LANGUAGES:
        module = _module(language)
        if lang in module.EXTENSIONS:
            if dest.exists() and any(dest.iterdir()):
                raise BuildError(f"{dest} already exists and is not empty")
            module.scaffold(dest, name, lang)
            return
    raise BuildError(f"unknown language {lang!r}; choose one of rust, go, js, ts, c, python, zig, "
                     f"assemblyscript, ruby, kotlin")


def scaffold_grants(lang: str) -> tuple[str, ...]:
    """The capabilities a new ``lang`` project imports, so its first call must grant them:
    ``config`` for every template; a language's module may name more (``SCAFFOLD_GRANTS``:
    Kotlin's also checks a URL over http and counts in kv)."""
    for language in LANGUAGES:
        module = _module(language)
        if lang in module.EXTENSIONS:
            return tuple(getattr(module, "SCAFFOLD_GRANTS", ("config",)))
    return ("config",)


@dataclass(frozen=True)
class UnitTests:
    """How to run a project's own unit tests natively, with the toolchain builds use."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path


def unit_tests(src: Path) -> UnitTests:
    """The command running the native unit tests of the project at ``src`` (cargo test,
    go test, node --test); :class:`BuildError` when its language has none or the toolchain
    is missing."""
    src = src.resolve()
    language = language_for(src)
    module = _module(language)
    problem = module.check()
    if problem:
        raise BuildError(f"cannot test {src.name}: {problem}", plugin=src.name,
                         toolchain=language)
    make: Callable[[Path], UnitTests] | None = getattr(module, "unit_tests", None)
    if make is None:
        raise BuildError(f"{src.name}: {language} plugins have no native unit-test runner; test "
                         f"them through the host (omnicore call build/plugins/NAME.wasm HANDLER "
                         f"--input ... -v)", plugin=src.name, toolchain=language)
    _lint(module, src)
    return make(src)


def _lint(module: ModuleType, src: Path) -> None:
    lint: Callable[[Path], None] | None = getattr(module, "lint", None)
    if lint is not None:
        lint(src)


@dataclass(frozen=True)
class BuildResult:
    """What happened to one plugin project in :func:`build_all`."""

    src: Path
    language: str
    output: Path | None
    seconds: float
    error: str | None = None
    #: Nothing changed since the last build, so nothing ran.
    up_to_date: bool = False
    #: The same build was in the build cache: copied from there, no compiler ran.
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def build_all(root: Path, out_dir: Path, *, force: bool = False,
              progress: Callable[[int, int, Path, BuildResult | None], None] | None = None,
              ) -> list[BuildResult]:
    """Build every project below ``root``; one failure does not stop the others.

    ``progress(index, total, src, result)`` is called before (``result=None``) and after each.
    """
    projects = list(discover(root))
    results = []
    for index, src in enumerate(projects, 1):
        if progress:
            progress(index, len(projects), src, None)
        started = time.perf_counter()
        language = language_for(src)
        output: Path | None = None
        error, how = None, "built"
        try:
            output, how = _build(src, out_dir, name=None, force=force)
        except BuildError as exc:
            error = str(exc)
        result = BuildResult(src, language, output, time.perf_counter() - started, error,
                             up_to_date=how == "up to date", cached=how == "cached")
        results.append(result)
        if progress:
            progress(index, len(projects), src, result)
    return results
