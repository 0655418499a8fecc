"""``omnicore test`` for C plugins: ``tests/*.c`` on ``sdk/c/omnicore_test.h``, compiled with
the plugin by clang for wasm32-wasi and run on the one test host (toolchains/testhost).

``c_unit`` is a plugin over sql, redis, kv, http and vectors with eight tests, one failing on
purpose.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from omnicore.errors import BuildError
from omnicore.sandbox import PluginModule, SandboxEngine
from omnicore.toolchains import UnitTests, build, c, scaffold, unit_tests

UNIT = Path(__file__).parent / "c_unit"
PASSING = ["stock_answers_the_scripted_rows", "stock_reports_a_failed_query",
           "hit_counts_in_redis_with_an_expiry", "each_test_starts_from_an_empty_host",
           "a_statement_without_an_answer_is_unavailable",
           "http_answers_what_the_test_scripted", "vectors_are_the_hosts"]

pytestmark = pytest.mark.skipif(c.check() is not None, reason=f"C: {c.check()}")


def run(tests: UnitTests, *names: str) -> subprocess.CompletedProcess[str]:
    """What `omnicore test SRC -- NAME...` runs."""
    return subprocess.run([*tests.argv, *names], env=tests.env, cwd=tests.cwd,
                          capture_output=True, text=True, timeout=300, check=False)


def test_the_scaffold_has_tests_that_pass(tmp_path: Path) -> None:
    src = tmp_path / "hello-c"
    scaffold(src, "hello-c", "c")
    done = run(unit_tests(src))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == ["ok   greets_with_the_configured_greeting",
                                        "ok   refuses_input_that_is_not_json",
                                        "2 passed, 0 failed"]


def test_passing_and_failing_tests_are_reported_over_the_hosts_sql_redis_kv_http() -> None:
    tests = unit_tests(UNIT)
    done = run(tests)
    lines = done.stdout.splitlines()
    n = len(PASSING)
    assert done.returncode == 1, done.stdout + done.stderr  # the number of failed tests
    assert [f"ok   {name}" for name in PASSING] == lines[:n]
    assert lines[n] == "FAIL a_failing_expectation"
    assert lines[n + 1].endswith('tests/test_handlers.c:72: r.output is "{"hits":1}", '
                                 'expected "{"hits":2}"')
    assert lines[n + 2:] == ["    log INFO hit 1", f"{n} passed, 1 failed"]
    # Named tests only: the passing ones pass.
    done = run(tests, *PASSING[2:])
    assert done.returncode == 0
    assert done.stdout.splitlines()[-1] == f"{len(PASSING) - 2} passed, 0 failed"


def test_the_tests_folder_stays_out_of_the_plugin(engine: SandboxEngine, out_dir: Path) -> None:
    module = PluginModule.load(engine, build(UNIT, out_dir))
    assert list(module.handlers) == ["stock", "hit", "fetch", "nearest"]
    assert {"sql", "redis", "kv", "http", "vectors"} <= set(module.requested)


def test_a_compile_error_is_clangs_own_message(tmp_path: Path) -> None:
    src = tmp_path / "broken"
    scaffold(src, "broken", "c")
    test_file = src / "tests" / "test_plugin.c"
    test_file.write_text(test_file.read_text().replace("!r.is_error", "!r.is_eror", 1))
    done = run(unit_tests(src))
    assert done.returncode == 1
    assert "tests/test_plugin.c:8:20: error: no member named 'is_eror'" in done.stderr
    assert "clang failed for" in done.stderr and "ok " not in done.stdout


def test_a_project_without_tests_is_told_how_to_add_them(tmp_path: Path) -> None:
    src = tmp_path / "untested"
    scaffold(src, "untested", "c")
    shutil.rmtree(src / "tests")
    with pytest.raises(BuildError, match=r"untested: no tests: add tests/\*\.c files"):
        unit_tests(src)


def test_a_test_that_traps_is_named_with_its_log_and_the_trap(tmp_path: Path) -> None:
    src = tmp_path / "trapping"
    scaffold(src, "trapping", "c")
    with (src / "tests" / "test_plugin.c").open("a") as f:
        f.write('\nOMNI_TEST(panics) {\n    omni_panic("boom %d", 1);\n}\n')
    done = run(unit_tests(src))
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert lines[2:4] == ["FAIL panics (trapped)", "    log ERROR panic: boom 1"]
    assert "omni_panic" in done.stdout and "unreachable" in done.stdout
    assert lines[-1] == "the tests after it did not run"
