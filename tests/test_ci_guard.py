"""Under CI=true no skip or xfail can pass silently (tests/conftest.py): a skip there can only
hide a broken set-up, an xfail a known bug."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CASES = {
    "test_module_skip.py": ("import pytest\n"
                            "pytest.skip('no toolchain', allow_module_level=True)\n"),
    "test_marked_skip.py": ("import pytest\n"
                            "@pytest.mark.skipif(True, reason='no toolchain')\n"
                            "def test_a(): pass\n"),
    "test_inline_skip.py": "import pytest\ndef test_a(): pytest.skip('no toolchain')\n",
    "test_xfail.py": ("import pytest\n"
                      "@pytest.mark.xfail(reason='known bug')\n"
                      "def test_a(): assert False\n"),
    "test_xpass.py": ("import pytest\n"
                      "@pytest.mark.xfail(reason='known bug')\n"
                      "def test_a(): pass\n"),
}


def run_case(tmp_path: Path, name: str, ci: bool) -> subprocess.CompletedProcess[str]:
    here = Path(__file__).parent
    tests = tmp_path / "tests"   # a package, as ours is: its conftest loads tests.sandbox_fixtures
    tests.mkdir()
    for helper in ("__init__.py", "conftest.py", "sandbox_fixtures.py", "browsers.py",
                   "schedule.py", "waiting.py", "callpath_contract.py", "compiler.py"):
        shutil.copy(here / helper, tests / helper)
    shutil.copy(here.parent / "pyproject.toml", tmp_path / "pyproject.toml")
    (tests / name).write_text(CASES[name])
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci:
        env["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(tmp_path), "-c", str(tmp_path / "pyproject.toml"),
                           str(tests / name)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("name", sorted(CASES))
def test_skips_and_xfails_fail_under_ci(tmp_path: Path, name: str) -> None:
    result = run_case(tmp_path, name, ci=True)
    assert result.returncode in (1, 2), result.stdout  # 2: collection interrupted
    assert "under CI (CI=true forbids skips and xfails)" in result.stdout or \
        "XPASS(strict)" in result.stdout, result.stdout


def test_outside_ci_a_skip_is_a_skip(tmp_path: Path) -> None:
    result = run_case(tmp_path, "test_marked_skip.py", ci=False)
    assert result.returncode == 0 and "1 skipped" in result.stdout, result.stdout
