"""Running the build's tools: one command under a timeout, one lock per cache folder."""

from __future__ import annotations

import contextlib
import fcntl
import subprocess
from collections.abc import Iterator
from pathlib import Path

from omnicore.errors import BuildError

__all__ = ["BUILD_TIMEOUT_S", "LANGUAGE", "locked", "run"]

LANGUAGE = "js"
BUILD_TIMEOUT_S = 600


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created with its folder if missing)."""
    # several builds (tests, build-all, a watcher) may want the runtime at the same moment
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    """Run ``cmd``; a failure is a :class:`BuildError` saying ``what`` failed, with the
    tool's own last words."""
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BuildError(f"{what} failed: {exc}", toolchain=LANGUAGE) from exc
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()[-4000:]
        raise BuildError(f"{what} failed:\n{detail}", toolchain=LANGUAGE)
