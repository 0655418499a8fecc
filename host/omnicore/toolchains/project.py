"""What every language's toolchain does the same way: write a scaffold's templates into a new
project, and run a compiler whose failure becomes a BuildError carrying the compiler's own
message."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable
from pathlib import Path

from omnicore.errors import BuildError

__all__ = ["compile_or_fail", "write_templates"]

#: The end of a compiler's output a BuildError keeps (the first error is usually near it).
_MESSAGE_CHARS = 4000


def write_templates(templates: Iterable[Path], root: Path, dest: Path,
                    render: Callable[[str], str]) -> None:
    """Write each of ``templates`` (files under ``root``) to the same place under ``dest``,
    its text passed through ``render``. ``.tmpl`` is dropped from the name and ``gitignore``
    becomes ``.gitignore``: package data keeps no dotfiles reliably."""
    for template in sorted(templates):
        rel = template.relative_to(root)
        name = rel.name.removesuffix(".tmpl").replace("gitignore", ".gitignore")
        target = dest / rel.parent / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(render(template.read_text(encoding="utf-8")), encoding="utf-8")


def compile_or_fail(cmd: list[str], *, tool: str, src: Path, toolchain: str, timeout_s: float,
                    cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (the compiler ``tool`` on project ``src``); BuildError with the end of
    its own diagnostics when it fails, and one when it runs past ``timeout_s``."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s,
                              check=False, cwd=cwd)
    except subprocess.TimeoutExpired as exc:
        raise BuildError(f"{tool} took over {timeout_s:g} s on {src}", plugin=src.name,
                         toolchain=toolchain) from exc
    if proc.returncode != 0:
        message = (proc.stderr or proc.stdout).strip()[-_MESSAGE_CHARS:]
        raise BuildError(f"{tool} failed for {src}:\n{message}", plugin=src.name,
                         toolchain=toolchain)
    return proc
