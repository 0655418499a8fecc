"""Running the build's tools: one command under a timeout (the cache folders' lock is
``locations.locked``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from omnicore.errors import BuildError

__all__ = ["BUILD_TIMEOUT_S", "LANGUAGE", "run"]

LANGUAGE = "js"
BUILD_TIMEOUT_S = 600


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
