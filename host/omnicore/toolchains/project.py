"""What every language's toolchain does the same way: write a scaffold's templates into a new
project, see that a compiler runs, run one whose failure becomes a BuildError carrying the
compiler's own message, and compile a project's tests into a program kept between runs."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from omnicore.errors import BuildError
from omnicore.toolchains import locations

__all__ = ["compile_or_fail", "compile_tests", "runs", "write_templates"]

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


def runs(cmd: list[str]) -> str | None:
    """None when ``cmd`` (a tool asked its version) runs and succeeds; else one line of why."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{cmd[0]} does not run ({exc})"
    return None if proc.returncode == 0 else f"{' '.join(cmd)} failed: {proc.stderr.strip()}"


def compile_tests(src: Path, toolchain: str,
                  cmd: Callable[[Path, Path], list[str] | list[list[str]]], *,
                  tool: str, timeout_s: float, cwd: Path | None = None) -> Path | None:
    """Compile the tests of the project at ``src`` into one wasm32-wasi program, kept in a
    folder of its own per project between runs: ``cmd(out, work)`` is the command of the
    compiler ``tool`` writing ``out`` (its caches in ``work``), or the commands run in turn
    (Kotlin's two steps), its own diagnostics going to the terminal as ``cargo test``'s would.
    The program, or None when the compiler failed or ran past ``timeout_s`` (said on
    stderr)."""
    work = locations.cache_dir() / f"{toolchain}-test" / (
        f"{src.name}-{hashlib.sha256(str(src).encode()).hexdigest()[:12]}")
    work.mkdir(parents=True, exist_ok=True)
    out = work / "tests.wasm"
    made = cmd(out, work)
    steps = [made] if made and isinstance(made[0], str) else made
    for args in steps:
        try:
            code = subprocess.run(args, check=False, timeout=timeout_s, cwd=cwd).returncode
        except subprocess.TimeoutExpired:
            print(f"{tool} took over {timeout_s} s on {src}", file=sys.stderr)
            return None
        if code != 0:
            print(f"{tool} failed for {src}'s tests (exit {code}): its message is above",
                  file=sys.stderr)
            return None
    return out
