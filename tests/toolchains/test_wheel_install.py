"""An installed wheel finds its SDKs without the checkout: ``omnicore new plugin`` then
``omnicore build`` then ``omnicore call`` in a fresh venv, run from a folder outside the
checkout (omnicore.toolchains.locations)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def run(cmd: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=900, check=False)
    assert proc.returncode == 0, f"{cmd}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.slow
def test_new_build_and_call_from_a_wheel_outside_the_checkout(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMNICORE_", "VIRTUAL_ENV", "PYTHONPATH"))}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # builds cache here, not in the checkout
    # Save cargo's: the checkout's target folder, whose registry crates (serde...) the set-up
    # compiled; the SDK crate the wheel carries is at a path of its own, so it compiles anew.
    env["OMNICORE_CARGO_TARGET_DIR"] = str(ROOT / "build" / "cargo-target")
    # From a copy of the sources: setuptools builds in the project's build/lib, which in a
    # checkout may hold another build's files (a folder shared by worktrees, or by a second
    # test run at the same moment), and the wheel would ship them.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        "build", ".venv", ".git", "node_modules", "target", "__pycache__", ".*_cache",
        ".omnicore", "tests", "bench"))
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", tmp_path / "dist", src], cwd=tmp_path, env=env)
    wheel = next((tmp_path / "dist").glob("omnicore-*.whl"))
    run([sys.executable, "-m", "venv", tmp_path / "venv"], cwd=tmp_path, env=env)
    bin_dir = tmp_path / "venv" / "bin"
    # Offline: the wheel alone goes in (--no-index --no-deps); its dependencies are the ones
    # the set-up installed, seen through a path entry after the new venv's own (a .pth line
    # adds a folder without running that folder's .pth files, so the checkout's editable
    # install stays out).
    site = run([bin_dir / "python", "-c", "import sysconfig; print(sysconfig.get_paths()"
                "['purelib'])"], cwd=tmp_path, env=env).strip()
    Path(site, "setup-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([bin_dir / "python", "-m", "pip", "install", "-q", "--no-index", "--no-deps", wheel],
        cwd=tmp_path, env=env)
    work = tmp_path / "work"
    work.mkdir()
    omnicore = bin_dir / "omnicore"
    # The package imported is the wheel's, not the checkout's.
    where = run([bin_dir / "python", "-c", "import omnicore; print(omnicore.__file__)"],
                cwd=work, env=env)
    assert str(tmp_path / "venv") in where

    for lang in ("c", "rust"):
        name = f"hello-{lang}"
        run([omnicore, "new", "plugin", name, "--lang", lang], cwd=work, env=env)
        sdk_refs = (work / name).rglob("*")
        assert not any(str(ROOT) in text or str(src) in text
                       for text in (p.read_text(errors="replace") for p in sdk_refs
                                    if p.is_file())), "scaffold points into the checkout"
        run([omnicore, "build", name], cwd=work, env=env)
        out = run([omnicore, "call", f"build/plugins/{name}.wasm", "greet", "--grant",
                   "config", "--input", '{"name": "Wheel"}'], cwd=work, env=env)
        assert json.loads(out) == {"message": "Hello, Wheel!"}
