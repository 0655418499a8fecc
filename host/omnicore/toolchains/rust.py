"""Rust plugins: a ``cdylib`` crate on the omnicore Rust SDK, built for wasm32-unknown-unknown.

Builds use Debian's rustc 1.63 (rustup's newer rustc has no wasm std here) and Debian's
packaged crates offline when they are installed, else any rustc on PATH with the wasm32 std and
cargo's usual registry; all into one cargo target dir shared by every plugin so the SDK and
serde compile once. Override with ``OMNICORE_RUSTC``, ``OMNICORE_CARGO``,
``OMNICORE_CARGO_TARGET_DIR`` and ``OMNICORE_RUST_SDK``.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from omnicore.errors import BuildError
from omnicore.toolchains import UnitTests, check_plugin_name, debian_crates, locations

__all__ = [
    "EXTENSIONS",
    "LANGUAGE",
    "TARGET",
    "TEST_TARGET",
    "check",
    "compile",
    "detect",
    "scaffold",
    "sdk_dir",
    "unit_tests",
]

LANGUAGE = "rust"
EXTENSIONS = ("rust", "rs")
TARGET = "wasm32-unknown-unknown"
#: Tests are a wasm32-wasi program run on omnicore's test host (libtest needs WASI).
TEST_TARGET = "wasm32-wasi"

_SCAFFOLD = Path(__file__).parent / "scaffolds" / "rust"
_DEBIAN_REGISTRY = "/usr/share/cargo/registry"
_BUILD_TIMEOUT_S = 900
# Cargo refuses these as package names; scaffolding renames the crate, not the plugin.
_RESERVED = {"test", "core", "std", "alloc", "proc_macro", "self", "super", "crate", "fn",
             "mod", "struct", "enum", "type", "use", "impl", "let", "match", "loop"}


def _has_wasm_std(rustc: str, target: str = TARGET) -> bool:
    try:
        sysroot = subprocess.run([rustc, "--print", "sysroot"], capture_output=True, text=True,
                                 timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return False
    return (Path(sysroot) / "lib" / "rustlib" / target / "lib").is_dir()


@functools.cache
def _toolchain() -> tuple[str, str]:
    """(rustc, cargo): the environment's choice, else Debian's, else a rustc on PATH that has
    the wasm32 std (rustup's newer rustc often lacks it: `rustup target add` fixes that)."""
    if "OMNICORE_RUSTC" in os.environ or "OMNICORE_CARGO" in os.environ:
        return (os.environ.get("OMNICORE_RUSTC", "rustc"),
                os.environ.get("OMNICORE_CARGO", "cargo"))
    if Path("/usr/bin/rustc").is_file() and _has_wasm_std("/usr/bin/rustc"):
        return "/usr/bin/rustc", "/usr/bin/cargo"
    rustc, cargo = shutil.which("rustc"), shutil.which("cargo")
    if rustc and cargo and _has_wasm_std(rustc):
        return rustc, cargo
    return "/usr/bin/rustc", "/usr/bin/cargo"


def _rustc() -> str:
    return _toolchain()[0]


def _cargo() -> str:
    return _toolchain()[1]


def programs() -> list[str | None]:
    return [_rustc(), _cargo()]


def sdk_dir() -> Path:
    """The ``omnicore-sdk`` crate that plugin crates depend on by path."""
    return locations.sdk_dir("rust")


def _target_dir(work: Path) -> Path:
    if "OMNICORE_CARGO_TARGET_DIR" in os.environ:
        return Path(os.environ["OMNICORE_CARGO_TARGET_DIR"])
    return locations.cache_dir() / "cargo-target"


def detect(src: Path) -> bool:
    """A folder with a ``Cargo.toml``."""
    return src.is_dir() and (src / "Cargo.toml").is_file()


def check() -> str | None:
    """``None`` when rustc with the wasm32 std and cargo are usable, else what to install."""
    install = ("run scripts/setup-toolchains.sh (Debian: apt-get install rustc cargo "
               "libstd-rust-dev-wasm32)")
    for tool in (_rustc(), _cargo()):
        if shutil.which(tool) is None:
            return f"{tool} not found; {install}"
    if not _has_wasm_std(_rustc()):
        return f"{_rustc()} has no standard library for {TARGET}; {install}"
    if not (sdk_dir() / "Cargo.toml").is_file():
        return f"the omnicore Rust SDK is not at {sdk_dir()}; set OMNICORE_RUST_SDK"
    return None


def _cargo_config() -> list[str]:
    # Passed on the command line so crates scaffolded anywhere build offline on Debian's
    # packaged crates even without their own .cargo/config.toml. Elsewhere cargo resolves
    # crates its usual way.
    if not Path(_DEBIAN_REGISTRY).is_dir():
        return []
    settings = [
        'source.crates-io.replace-with="debian-packages"',
        f'source.debian-packages.directory="{_DEBIAN_REGISTRY}"',
        "net.offline=true",
    ]
    return [arg for s in settings for arg in ("--config", s)]


def compile(src: Path, work: Path) -> bytes:
    """Run ``cargo build --release`` for wasm32 and return the crate's ``cdylib``."""
    manifest = (src / "Cargo.toml").resolve()
    target_dir = _target_dir(work)
    target_dir.mkdir(parents=True, exist_ok=True)
    cmd = [_cargo(), "build", "--release", "--target", TARGET, "--manifest-path", str(manifest),
           "--message-format=json-render-diagnostics", *_cargo_config()]
    env = {**os.environ, "RUSTC": _rustc(), "CARGO_TARGET_DIR": str(target_dir),
           "CARGO_TERM_COLOR": "never"}
    env.pop("RUSTC_WRAPPER", None)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env,
                              timeout=_BUILD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"cargo build of {src} took over {_BUILD_TIMEOUT_S} s",
                         plugin=src.name, toolchain=LANGUAGE) from exc
    if proc.returncode != 0:
        raise BuildError(_failure(src, proc.stderr), plugin=src.name, toolchain=LANGUAGE)
    wasm = _artifact(proc.stdout, manifest)
    if wasm is None:
        raise BuildError(f"{manifest} built no cdylib: add [lib] crate-type = [\"cdylib\"]",
                         plugin=src.name, toolchain=LANGUAGE)
    return wasm.read_bytes()


def _artifact(stdout: str, manifest: Path) -> Path | None:
    found = None
    for line in stdout.splitlines():
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if (msg.get("reason") == "compiler-artifact"
                and Path(msg.get("manifest_path", "")).resolve() == manifest
                and "cdylib" in msg.get("target", {}).get("crate_types", [])):
            found = next((Path(f) for f in msg.get("filenames", []) if f.endswith(".wasm")), None)
    return found


def _failure(src: Path, stderr: str) -> str:
    tail = stderr.strip()[-4000:]
    hint = ""
    if ("no matching package named" in stderr or "failed to select a version" in stderr) \
            and Path(_DEBIAN_REGISTRY).is_dir():
        # Debian ships each crate feature as its own package: name them all, exactly.
        install = debian_crates.apt_install_line(src / "Cargo.toml")
        hint = (f"\nhint: builds are offline on Debian's packaged crates; {install} "
                "(and use crate versions Debian ships)")
    return f"cargo build failed for {src}:\n{tail}{hint}"


def _render(template: str, values: dict[str, str]) -> str:
    text = (_SCAFFOLD / template).read_text(encoding="utf-8")
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def scaffold(dest: Path, name: str, lang: str) -> None:
    """A new crate at ``dest`` with one JSON handler ``greet``; it builds as is."""
    check_plugin_name(name)
    crate = name if name[0].isalpha() and name not in _RESERVED else f"plugin-{name}"
    values = {
        "name": name,
        "crate": crate,
        # A JSON string is a valid TOML basic string, so any path is quoted correctly.
        "sdk_path": json.dumps(str(sdk_dir())),
    }
    files = {
        "Cargo.toml": "Cargo.toml.tmpl",
        "omnicore.toml": "omnicore.toml.tmpl",
        "src/lib.rs": "lib.rs.tmpl",
        ".gitignore": "gitignore.tmpl",
    }
    if Path(_DEBIAN_REGISTRY).is_dir():
        # So plain `cargo build` in the new crate also uses Debian's crates, offline.
        files[".cargo/config.toml"] = "cargo-config.toml.tmpl"
    for rel, template in files.items():
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_render(template, values), encoding="utf-8")


def unit_tests(src: Path) -> UnitTests:
    """``cargo test`` for wasm32-wasi, each test run on omnicore's test host
    (:mod:`omnicore.toolchains.testrunner` as cargo's runner), with the rustc/cargo builds use
    and Debian's crates offline.

    A newer cargo first on PATH (rustup's) cannot drive Debian's rustc 1.63 (``unknown print
    request 'split-debuginfo'``), so the pair always comes from :func:`_toolchain`.
    """
    rustc = _rustc()
    if not _has_wasm_std(rustc, TEST_TARGET):
        raise BuildError(f"{rustc} has no standard library for {TEST_TARGET}, which tests run "
                         "on; run scripts/setup-toolchains.sh (Debian: apt-get install "
                         "libstd-rust-dev-wasm32)", plugin=src.name, toolchain=LANGUAGE)
    rustdoc = Path(rustc).with_name("rustdoc")
    env = {**os.environ, "RUSTC": rustc, "CARGO_TARGET_DIR": str(_target_dir(src)),
           "RUSTDOC": str(rustdoc) if rustdoc.is_file() else "rustdoc",
           "CARGO_TARGET_WASM32_WASI_RUNNER":
               f"{sys.executable} -m omnicore.toolchains.testrunner"}
    env.pop("RUSTC_WRAPPER", None)
    # No DWARF in the test build (unless the caller's environment asks for it): nothing on the
    # test host reads it (a panic's location is data, wasm32-wasi has no backtraces), and it
    # costs a quarter of a cold build's CPU and half the test binary (textstats: 63 -> 48
    # CPU-s, 32 -> 17 MB). The crate's own [profile] settings stand otherwise.
    env.setdefault("CARGO_PROFILE_TEST_DEBUG", "0")
    argv = [_cargo(), "test", "--target", TEST_TARGET, "--manifest-path",
            str(src / "Cargo.toml"), *_cargo_config()]
    return UnitTests(argv, env, src)
