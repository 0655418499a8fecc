"""The markers of what a test needs (``toolchain``, ``postgres``, ``mysql``, ``redis``,
``browser``, ``container``, ``slow``): tests/conftest.py sets them from the fixtures and helpers
a test uses, `scripts/dev test --fast` deselects them, and a test that starts what its markers
do not say is named at the end of the run. And ``callpath``, the call-path contract
(tests/callpath_contract.py), which `scripts/dev test` runs again on the Python call path.

The suite's own tests are collected in a subprocess (a collection inside this session would
share its modules and its audit hook).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.callpath_contract import CALLPATH_CONTRACT
from tests.conftest import NEEDS, NEEDS_BY_PROGRAM, _need_of_program
from tests.test_dev_script import XDIST, calls, dev  # noqa: F401 (the fixture)

ROOT = Path(__file__).resolve().parents[1]
FAST = "not (toolchain or postgres or mysql or redis or broker or browser or container or slow)"

_DUMP = """
import json, sys
import pytest

class Dump:
    def pytest_collection_finish(self, session):
        marks = {i.nodeid: sorted({m.name for m in i.iter_markers()}) for i in session.items}
        print("MARKS " + json.dumps(marks))

sys.exit(pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", *sys.argv[1:]],
                     plugins=[Dump()]))
"""


def collected(*args: str, among: tuple[str, ...] = NEEDS) -> dict[str, set[str]]:
    """Each collected test's markers among ``among`` (its needs), by node id."""
    done = subprocess.run([sys.executable, "-c", _DUMP, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("MARKS "))
    return {k: set(v) & set(among) for k, v in json.loads(line[6:]).items()}


# One collection serves the module (each costs a pytest start and the imports of its files):
# the files the needs tests look at, the contract's files and one file outside the contract.
SAMPLES = ("tests/storage/test_postgres_rename.py", "tests/storage/test_contract.py",
           "tests/conformance/test_greeter.py", "tests/console/test_browser.py",
           "tests/core/test_jsoncodec.py", "tests/sandbox/test_limits.py",
           "tests/capabilities/test_kv.py")


@pytest.fixture(scope="module")
def every_mark() -> dict[str, set[str]]:
    files = {entry.partition("::")[0] for entry in CALLPATH_CONTRACT} | set(SAMPLES)
    return collected(*sorted(files), among=(*NEEDS, "callpath"))


@pytest.fixture(scope="module")
def marks(every_mark: dict[str, set[str]]) -> dict[str, set[str]]:
    return {nodeid: needs & set(NEEDS) for nodeid, needs in every_mark.items()}


def _of(marks: dict[str, set[str]], prefix: str) -> list[set[str]]:
    found = [needs for nodeid, needs in marks.items() if nodeid.startswith(prefix)]
    assert found, f"no test collected under {prefix}"
    return found


def test_a_test_on_the_pg_cluster_fixture_needs_postgres(marks: dict[str, set[str]]) -> None:
    # pg_url -> pg_cluster -> tests.pgcluster.Cluster
    assert all(n == {"postgres"} for n in _of(marks, "tests/storage/test_postgres_rename.py::"))


def test_a_storage_contract_needs_postgres_on_that_backend_only(
        marks: dict[str, set[str]]) -> None:
    contract = "tests/storage/test_contract.py::test_kv_round_trip_and_sorted_prefix_list"
    assert _of(marks, contract + "[postgres]") == [{"postgres"}]
    assert _of(marks, contract + "[sqlite]") == [set()]


def test_a_test_of_a_plugin_built_from_source_needs_the_toolchain(
        marks: dict[str, set[str]]) -> None:
    # greeter -> example_wasm -> omnicore.toolchains.build (tests/conformance/conftest.py)
    assert all(n == {"toolchain"} for n in _of(marks, "tests/conformance/test_greeter.py::"))
    # The browser fixture (Playwright), and the Rust greeter the console tests upload.
    assert all(n >= {"browser", "toolchain"} for n in _of(marks, "tests/console/test_browser.py"))


def test_a_unit_test_needs_nothing(marks: dict[str, set[str]]) -> None:
    assert all(n == set() for n in _of(marks, "tests/core/test_jsoncodec.py::"))
    # The sandbox's tests run WAT the test assembles: nothing to build.
    assert all(n == set() for n in _of(marks, "tests/sandbox/test_limits.py::"))


@pytest.mark.parametrize(("argv", "need"), [
    (["/usr/lib/postgresql/16/bin/initdb", "-D", "x"], "postgres"),
    (["/usr/sbin/mariadbd", "--no-defaults"], "mysql"),
    (["redis-server", "--port", "0"], "redis"),
    (["podman", "run", "omnicore:demo"], "container"),
    (["bash", "/repo/scripts/image"], "container"),
    (["node", "/x/playwright/driver/package/cli.js", "run-driver"], "browser"),
    (["cargo", "build", "--release"], "toolchain"),
    (["/repo/build/js-tools/node_modules/.bin/componentize-qjs", "--sync"], "toolchain"),
    (["node", "asc.js", "pdk_plugin.ts"], "toolchain"),
    ([sys.executable, "-m", "omnicore.cli", "dev", "src"], "toolchain"),
    (["/repo/.venv/bin/omnicore", "build", "."], "toolchain"),
    (["/repo/.venv/bin/omnicore", "run", "app"], None),
    (["go", "env", "GOVERSION"], None),  # a check, not a build
    (["zig", "version"], None),
    (["wasm-tools", "parse", "a.wat"], None),
    ("git status", None),
])
def test_the_programs_a_test_starts_say_what_it_needs(argv: list[str] | str,
                                                        need: str | None) -> None:
    assert _need_of_program(argv) == need


def test_a_test_that_starts_what_its_markers_do_not_say_is_named(tmp_path: Path) -> None:
    (tmp_path / "conftest.py").write_text(
        "from tests.conftest import pytest_collection_modifyitems, pytest_configure, "
        "pytest_unconfigure  # noqa: F401\n")
    (tmp_path / "pytest.ini").write_text(
        "[pytest]\nmarkers =\n" + "".join(f"    {need}: -\n" for need in NEEDS))
    # A stand-in for PostgreSQL's initdb (named from the table: a literal name in this code
    # would mark this test postgres).
    program = next(name for name, need in NEEDS_BY_PROGRAM.items() if need == "postgres")
    fake = tmp_path / "bin" / program
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    # The program's name is not in the code (that would mark the test): it comes from outside.
    (tmp_path / "test_inner.py").write_text(textwrap.dedent("""
        import os
        import subprocess
        import pytest

        def test_unmarked():
            subprocess.run([os.environ["PROGRAM"]], check=True)

        @pytest.mark.postgres
        def test_marked():
            subprocess.run([os.environ["PROGRAM"]], check=True)
    """))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PROGRAM": str(fake)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rN",
                           str(tmp_path)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.partition("needs not marked")[2]
    assert "test_inner.py::test_unmarked: postgres" in summary
    assert "test_marked" not in summary


def test_dev_test_fast_runs_what_needs_none_of_them_once(dev: Path) -> None:  # noqa: F811
    # No set-up (the venv is there; none of these tests needs a build), no second call path,
    # no linters; pytest's own arguments pass through, paths too.
    assert calls(dev, "--fast", "-x", "tests/core") == [
        f"python native -m pytest -m {FAST} {XDIST} -x tests/core"]
    assert calls(dev, "tests/sandbox", "--fast") == [
        f"python native -m pytest -m {FAST} {XDIST} tests/sandbox"]


# ---- callpath: the call-path contract -------------------------------------------------------


def test_every_contract_entry_is_tests_marked_callpath_and_nothing_else_is(
        every_mark: dict[str, set[str]]) -> None:
    # Collected from the contract's files: an entry naming a test that was renamed or moved
    # would leave its behaviour on one call path only, so it fails here.
    marks = {nodeid: m & {"callpath"} for nodeid, m in every_mark.items()}
    for entry in CALLPATH_CONTRACT:
        found = [m for nodeid, m in marks.items()
                 if nodeid == entry or nodeid.startswith((entry + "::", entry + "["))]
        assert found, f"{entry}: no such test (tests/callpath_contract.py)"
        assert all(m == {"callpath"} for m in found), entry
    # Not a capability's own logic; in a file only one of whose tests is the contract's (the
    # log ring's, whose other tests run both rings at once), only that one.
    assert all(not m for m in _of(marks, "tests/capabilities/test_kv.py::"))
    ring = {n: m for n, m in marks.items() if n.startswith("tests/capabilities/test_pluginlog")}
    assert ring["tests/capabilities/test_pluginlog.py::test_the_chosen_ring_is_the_one_asked_"
                "for"] == {"callpath"}
    assert sum(1 for m in ring.values() if not m) > 10


def test_the_contract_lies_in_the_folders_the_python_path_run_collects() -> None:
    script = (ROOT / "scripts" / "dev").read_text()
    folders = script.partition("python_path=(")[2].partition(")")[0].split()
    assert folders, "scripts/dev has no python_path"
    outside = [entry for entry in CALLPATH_CONTRACT
               if not any(entry.startswith(folder + "/") for folder in folders)]
    assert not outside, f"scripts/dev's Python-path run would not collect: {outside}"


def test_the_spec_accounts_for_every_test_file_the_python_path_run_collects() -> None:
    # specs/callpath-contract.md says, for every file of those folders, what of the call path
    # it holds (the contract's) or why the call path cannot change it (the others): a new
    # test file must be put on one side.
    import re

    script = (ROOT / "scripts" / "dev").read_text()
    folders = script.partition("python_path=(")[2].partition(")")[0].split()
    spec = (ROOT / "specs" / "callpath-contract.md").read_text()
    named = {Path(m).name for m in re.findall(r"`([\w/]*test_\w+\.py)(?:::\w+)?`", spec)}
    files = sorted({p.name for folder in folders for p in (ROOT / folder).glob("test_*.py")})
    assert len(files) > 80
    assert not set(files) - named, f"specs/callpath-contract.md names nowhere: " \
                                   f"{sorted(set(files) - named)}"
    assert {Path(e.partition("::")[0]).name for e in CALLPATH_CONTRACT} <= named
