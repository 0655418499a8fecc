"""``scripts/dev test``: with no test path it runs what CI runs (``./scripts/dev test -ra``),
unchanged: the suite on the C call path, the call-path contract (``-m callpath``,
tests/callpath_contract.py) on the Python one; given test paths it runs only those, and the
contract's among them on the Python path too; every form on pytest-xdist's workers unless the
arguments choose.

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
def dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    # The script's runs make their temporary folders here (a failing run keeps its own).
    (tmp_path / "tmp").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
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


XDIST = f"-n {len(os.sched_getaffinity(0)) + 1} --dist load"  # nproc's count, and one more


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


CONTRACT = "-m callpath and not native"


def test_without_paths_it_runs_what_ci_runs(dev: Path) -> None:
    # The whole suite on the C call path; on the Python one only the call-path contract.
    assert calls(dev, "-ra") == [
        f"python native -m pytest {XDIST} --durations=30 -ra",
        "python python -m pytest tests/sandbox tests/extism tests/capabilities tests/plugins "
        f"{CONTRACT} -p no:cacheprovider {XDIST} -ra",
        "ruff check host tests bench",
        "mypy"]


def test_with_paths_it_runs_only_those_and_their_contract_tests_on_both(dev: Path) -> None:
    # Outside the contract's folders: the C call path only.
    assert calls(dev, "tests/core/test_workers.py", "-x") == [
        f"python native -m pytest {XDIST} tests/core/test_workers.py -x"]
    # Inside them (a test id too): the C path, then the contract's tests among them on the
    # Python path, with the options, and nothing else.
    assert calls(dev, "-k", "deadline", "tests/sandbox/test_limits.py::test_a", "./tests/core",
                 "tests/plugins") == [
        f"python native -m pytest {XDIST} -k deadline tests/sandbox/test_limits.py::test_a "
        "./tests/core tests/plugins",
        "python python -m pytest tests/sandbox/test_limits.py::test_a tests/plugins "
        f"{CONTRACT} -p no:cacheprovider {XDIST} -k deadline"]


def _python_path_collects(dev: Path, status: int) -> None:
    """The stand-in python answers ``status`` on the Python path (5: no test collected)."""
    python = dev / ".venv" / "bin" / "python"
    python.write_text(_RECORD.replace("{log}", str(dev.parent / "calls.log"))
                      + f'[[ "${{OMNICORE_CALLPATH:-}}" != python ]] || exit {status}\n')


def test_paths_holding_no_contract_test_pass_and_a_failure_still_fails(dev: Path) -> None:
    # A given file under the folders with no contract test in it: pytest collects nothing on
    # the Python path (exit 5), which is no failure; the whole run's too.
    _python_path_collects(dev, 5)
    assert calls(dev, "tests/plugins") == [
        f"python native -m pytest {XDIST} tests/plugins",
        f"python python -m pytest tests/plugins {CONTRACT} -p no:cacheprovider {XDIST}"]
    assert calls(dev)[-2:] == ["ruff check host tests bench", "mypy"]
    # A failing contract test fails the command, and the linters do not run after it.
    _python_path_collects(dev, 1)
    log = dev.parent / "calls.log"
    for args in (["tests/sandbox/test_limits.py"], []):
        log.unlink(missing_ok=True)
        done = subprocess.run(["bash", str(dev / "scripts" / "dev"), "test", *args], cwd=dev,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 1
        ran = log.read_text()
        assert "python python -m pytest" in ran and "ruff" not in ran, args


def test_the_arguments_or_the_environment_choose_the_workers(dev: Path) -> None:
    # -n 0 (one process, for a debugger's sake), --pdb and -p no:xdist keep pytest's own.
    for chosen in (["-n", "0"], ["-n4"], ["--numprocesses=3"], ["-p", "no:xdist"], ["--pdb"]):
        line = " ".join(chosen)
        assert calls(dev, "tests/core/test_workers.py", *chosen) == [
            f"python native -m pytest tests/core/test_workers.py {line}"]
    assert calls(dev, "tests/core/test_workers.py", workers="3") == [
        "python native -m pytest -n 3 --dist load tests/core/test_workers.py"]


def test_a_run_keeps_its_temporary_files_in_one_folder_it_removes_when_it_passes(
        dev: Path, tmp_path: Path) -> None:
    """Everything a run starts sees TMPDIR set to a fresh folder of the run's own, under the
    TMPDIR it was given: removed when the run passes, kept (and named) when it fails, on the
    whole run, given paths and --fast alike."""
    base = tmp_path / "tmp"  # the dev fixture's TMPDIR
    python = dev / ".venv" / "bin" / "python"
    seen = tmp_path / "tmpdirs"
    # The stand-in python writes a file where a test's servers would, and answers $STATUS.
    python.write_text(f'#!/usr/bin/env bash\necho "$TMPDIR" >> "{seen}"\n'
                      'echo data > "$TMPDIR/server.log"\nexit "${STATUS:-0}"\n')
    env = {**os.environ, "TMPDIR": str(base)}
    for args in ([], ["tests/core/test_workers.py"], ["--fast"]):
        seen.unlink(missing_ok=True)
        done = subprocess.run(["bash", str(dev / "scripts" / "dev"), "test", *args], cwd=dev,
                              capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 0, done.stderr
        folders = set(seen.read_text().split())
        assert len(folders) == 1, folders  # one folder for every process of the run
        folder = Path(folders.pop())
        assert folder.parent == base and folder.name.startswith("omnicore-test.")
        assert list(base.iterdir()) == [], args  # removed: the run passed
    for args in ([], ["--fast"]):
        done = subprocess.run(["bash", str(dev / "scripts" / "dev"), "test", *args], cwd=dev,
                              capture_output=True, text=True, timeout=60,
                              env={**env, "STATUS": "1"})
        assert done.returncode == 1
        [kept] = base.iterdir()
        assert (kept / "server.log").read_text() == "data\n"
        assert f"kept this run's temporary files: {kept}" in done.stderr
        shutil.rmtree(kept)
