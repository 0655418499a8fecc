"""``scripts/dev test``: with no test path it runs what CI runs (``./scripts/dev test -ra``),
unchanged; given test paths it runs only those, on both call paths; every form on pytest-xdist's
workers unless the arguments choose.

The real script runs in a copy of the checkout's layout whose set-up script and venv tools
are stand-ins that write down how they were called: the script's own logic is what runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_RECORD = '#!/usr/bin/env bash\necho "$(basename "$0") ${OMNICORE_CALLPATH:-} $*" >> "{log}"\n'


@pytest.fixture
def dev(tmp_path: Path) -> Path:
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "dev", root / "scripts" / "dev")
    log = tmp_path / "calls.log"
    for tool in ("scripts/setup-toolchains.sh", ".venv/bin/python", ".venv/bin/omnicore",
                 ".venv/bin/ruff", ".venv/bin/mypy"):
        path = root / tool
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_RECORD.replace("{log}", str(log)))
        path.chmod(0o755)
    for folder in ("tests/core", "tests/sandbox", "tests/plugins"):
        (root / folder).mkdir(parents=True)
    (root / "tests" / "core" / "test_workers.py").write_text("")
    (root / "tests" / "sandbox" / "test_limits.py").write_text("")
    return root


XDIST = "-n auto --dist load"


def calls(root: Path, *args: str, workers: str | None = None) -> list[str]:
    log = root.parent / "calls.log"
    log.unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMNICORE_CALLPATH", "OMNICORE_TEST_WORKERS")}
    if workers is not None:
        env["OMNICORE_TEST_WORKERS"] = workers
    done = subprocess.run(["bash", str(root / "scripts" / "dev"), "test", *args], cwd=root,
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    return [" ".join(line.split()) for line in log.read_text().splitlines()
            if not line.startswith(("setup-toolchains.sh", "omnicore"))]


def test_without_paths_it_runs_what_ci_runs(dev: Path) -> None:
    assert calls(dev, "-ra") == [
        f"python native -m pytest {XDIST} --durations=30 -ra",
        "python python -m pytest tests/sandbox tests/extism tests/capabilities tests/plugins "
        f"-m not native -p no:cacheprovider {XDIST} -ra",
        "ruff check host tests bench",
        "mypy"]


def test_with_paths_it_runs_only_those_on_both_call_paths(dev: Path) -> None:
    # Outside the Python path's folders: the C call path only.
    assert calls(dev, "tests/core/test_workers.py", "-x") == [
        f"python native -m pytest {XDIST} tests/core/test_workers.py -x"]
    # Inside them (a test id too): both, with the options, and nothing else.
    assert calls(dev, "-k", "deadline", "tests/sandbox/test_limits.py::test_a", "./tests/core",
                 "tests/plugins") == [
        f"python native -m pytest {XDIST} -k deadline tests/sandbox/test_limits.py::test_a "
        "./tests/core tests/plugins",
        "python python -m pytest tests/sandbox/test_limits.py::test_a tests/plugins "
        f"-m not native -p no:cacheprovider {XDIST} -k deadline"]


def test_the_arguments_or_the_environment_choose_the_workers(dev: Path) -> None:
    # -n 0 (one process, for a debugger's sake), --pdb and -p no:xdist keep pytest's own.
    for chosen in (["-n", "0"], ["-n4"], ["--numprocesses=3"], ["-p", "no:xdist"], ["--pdb"]):
        line = " ".join(chosen)
        assert calls(dev, "tests/core/test_workers.py", *chosen) == [
            f"python native -m pytest tests/core/test_workers.py {line}"]
    assert calls(dev, "tests/core/test_workers.py", workers="3") == [
        "python native -m pytest -n 3 --dist load tests/core/test_workers.py"]
