"""The console's front end lives in the top-level ``web/`` folder and ships in the wheel
(``omnicore/console/web``, put there by setup.py as ``sdk/`` is): a wheel built from the
sources carries every template and static asset, and the console imported from it renders
its pages from that copy, not from a checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from omnicore.console import assets, render

ROOT = Path(__file__).resolve().parents[2]


def test_a_checkout_reads_the_top_level_web_folder() -> None:
    assert not (ROOT / "host" / "omnicore" / "console" / "web").exists()
    assert assets.web_dir() == ROOT / "web"
    assert render.TEMPLATES.get_template("overview.html").filename == str(
        ROOT / "web" / "templates" / "overview.html")


def test_the_wheel_carries_the_front_end_and_the_console_uses_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMNICORE_", "VIRTUAL_ENV", "PYTHONPATH"))}
    # From a copy of the sources: the checkout's build/lib may hold another build's files.
    src = tmp_path / "src"
    anywhere = shutil.ignore_patterns("node_modules", "target", "__pycache__", ".*_cache")

    def skip(folder: str, names: list[str]) -> set[str]:
        top = {"build", ".venv", ".git", ".omnicore", "tests", "bench", "plugins", "examples",
               "deploy"} if Path(folder) == ROOT else set()
        return set(anywhere(folder, names)) | (top & set(names))

    shutil.copytree(ROOT, src, symlinks=True, ignore=skip)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                           "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    wheel = next((tmp_path / "dist").glob("omnicore-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"omnicore/console/web/{p.relative_to(ROOT / 'web').as_posix()}"
                for p in (ROOT / "web").rglob("*") if p.is_file()}
    assert "omnicore/console/web/templates/base.html" in expected
    assert expected <= names, sorted(expected - names)
    assert "omnicore/toolchains/sdk/rust/Cargo.toml" in names          # sdk/ still ships

    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    probe = ("from omnicore.console import render, server; "
             "print(render.WEB); print(render.TEMPLATES.get_template('plugin.html').filename)")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300,
                          env={**env, "PYTHONPATH": str(unpacked)})
    assert proc.returncode == 0, proc.stderr
    web, template = proc.stdout.split()
    assert web == str(unpacked / "omnicore" / "console" / "web")
    assert template == f"{web}/templates/plugin.html"
