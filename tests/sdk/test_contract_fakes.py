"""Every SDK's tests, on the test host they run on (omnicore's own, toolchains/testhost, for
every language now), answer the cases of sdk/contract/host.json as the real host does
(test_contract_host.py holds the host to the same table), each run with its own language's
toolchain: an SDK that reads the host's replies otherwise (a command missing or extra, a
reply shaped otherwise, an SQL answer the host never sends accepted) fails here, not live.

Each language's driver (tests/sdk/contract_drivers/; Go's and Rust's are tests in their SDKs,
which call the SDK's unexported host functions) reads the requests, one JSON a line
(``{"redis": request}``, ``{"reset": true}`` between cases, ``{"sql": answer}``), runs each
through its SDK's test host as a plugin's call would, and prints one line per request:
``ok <JSON>`` or ``error <text>``. The comparison is here, once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from omnicore.toolchains import UnitTests, go, kotlin, locations, rust, unit_tests
from omnicore.toolchains.testhost.program import Captured, Program
from omnicore.toolchains.testredis import MemoryRedis
from tests.sdk.contract import (
    TABLE,
    Outcome,
    expected,
    not_the_hosts,
    outcome_of_block,
    request,
)

DRIVERS = Path(__file__).parent / "contract_drivers"


def _requests() -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for case in TABLE["redis"]["cases"]:
        lines.append({"reset": True})
        lines += [{"redis": request(step)} for step in case["steps"]]
    lines += [{"sql": case["answer"]} for case in TABLE["sql"]["answers"] if "query" in case]
    lines += [{"sql": case["answer"]} for case in TABLE["sql"]["not_answers"]]
    return lines


def _check(printed: str, *, sql: bool = True) -> None:
    """The driver's output against the table: every redis step's outcome, every SQL answer
    passed through unchanged in shape, every answer the host never sends refused."""
    outcomes: list[Outcome] = []
    for line in printed.splitlines():
        kind, _, rest = line.partition(" ")
        if kind == "typed":  # a fake given Python values, not JSON: it makes the shape
            outcomes.append(("typed", None))
        elif kind in ("ok", "error"):
            outcomes.append(outcome_of_block(kind == "error", rest))
    redis = [(case["name"], step) for case in TABLE["redis"]["cases"] for step in case["steps"]]
    answers = [c["answer"] for c in TABLE["sql"]["answers"] if "query" in c] if sql else []
    bad = TABLE["sql"]["not_answers"] if sql else []
    assert len(outcomes) == len(redis) + len(answers) + len(bad), printed[-2000:]
    wrong = [f"{name}: {request(step)} -> {got}, the host answers {expected(step)}"
             for (name, step), got in zip(redis, outcomes, strict=False)
             if got != expected(step)]
    sql = outcomes[len(redis):]
    wrong += [f"sql answer {want} came back as {got}"
              for want, got in zip(answers, sql, strict=False)
              if got[0] != "ok" or _shape(got[1]) != _shape(want)]
    # A fake may refuse an answer the host never sends, or make it the host's shape (JS
    # takes bare column names); it may never pass it on as it is.
    wrong += [f"sql answer {case['answer']} came back as {got[1]} ({case['why']})"
              for case, got in zip(bad, sql[len(answers):], strict=False)
              if got[0] == "ok" and not_the_hosts(got[1])]
    assert not wrong, "\n".join(wrong)


def _shape(answer: Any) -> Any:
    """An SQL answer's column names and rows (a fake may not know a column's type: "")."""
    if not isinstance(answer, dict):
        return answer
    return ([c.get("name") if isinstance(c, dict) else c for c in answer.get("columns", [])],
            answer.get("rows"))


def _run(argv: list[str], requests: Path, **kwargs: Any) -> str:
    proc = subprocess.run([*argv, str(requests)], capture_output=True, text=True, timeout=600,
                          check=False, **kwargs)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_the_test_hosts_redis() -> None:
    """omnicore.toolchains.testredis: the Redis the Python test host serves (C's runner)."""
    printed = []
    for case in TABLE["redis"]["cases"]:
        redis = MemoryRedis()
        for step in case["steps"]:
            failed, block = redis.command(json.dumps(request(step)).encode())
            printed.append(f"{'error' if failed else 'ok'} {block.decode()}")
    _check("\n".join(printed), sql=False)


@pytest.fixture
def requests_file(tmp_path: Path) -> Path:
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in _requests()))
    return path


def test_python(requests_file: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(locations.sdk_dir("python"))}
    _check(_run([sys.executable, str(DRIVERS / "python_driver.py")], requests_file, env=env))


def test_a_drifted_fake_fails_the_check() -> None:
    """The check itself: one reply changed, one command missing, a bare column accepted."""
    right = _python_outcomes()
    printed = right.replace('ok "OK"', 'ok "ok"', 1)
    with pytest.raises(AssertionError, match="the host answers"):
        _check(printed)
    lines = right.splitlines()
    lines[-1] = "ok " + json.dumps(TABLE["sql"]["not_answers"][-1]["answer"])
    with pytest.raises(AssertionError, match="came back as"):
        _check("\n".join(lines))


def _python_outcomes() -> str:
    """What a fake agreeing with the table prints."""
    out = [f"ok {json.dumps(step['reply'])}" if "reply" in step else f"error {step['error']}: x"
           for case in TABLE["redis"]["cases"] for step in case["steps"]]
    out += [f"ok {json.dumps(c['answer'])}" for c in TABLE["sql"]["answers"] if "query" in c]
    out += ["error INVALID: x" for _ in TABLE["sql"]["not_answers"]]
    return "\n".join(out)


def _unit_tests(tests: Callable[[Path], UnitTests], project: Path, *extra: str,
                env: dict[str, str] | None = None) -> str:
    """``omnicore test`` on ``project`` (a driver as a plugin project, or the SDK whose tests
    hold one): its output, both streams; the drivers that write beside a test runner mark
    their lines ``CONTRACT``."""
    run = tests(project)
    proc = subprocess.run([*run.argv, *extra], env={**run.env, **(env or {})}, cwd=run.cwd,
                          capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    # (A runner's own progress may start the line: zig test's "1/1 ..." does.)
    marked = [line.partition("CONTRACT ")[2] for line in (proc.stdout + proc.stderr).splitlines()
              if "CONTRACT " in line]
    return "\n".join(marked)


def test_js(requests_file: Path, tmp_path: Path) -> None:
    project = tmp_path / "js"
    shutil.copytree(DRIVERS / "js", project)
    shutil.copy(requests_file, project / "requests.jsonl")
    _check(_unit_tests(unit_tests, project))


def test_go(requests_file: Path) -> None:
    # sdk/go/contract_test.go: the SDK's host calls, answered by omnicore's test host, as
    # Rust's are.
    lines = {"OMNICORE_CONTRACT_LINES": requests_file.read_text()}
    _check(_unit_tests(go.unit_tests, locations.sdk_dir("go"), "-run", "^TestContract$",
                       "-count=1", "-v", env=lines))


def test_rust(requests_file: Path) -> None:
    # sdk/rust/src/contract_test.rs: the SDK's host calls, answered by omnicore's test host
    # (toolchains/testhost: the redis and sql capabilities' own code over its fakes).
    _check(_unit_tests(rust.unit_tests, locations.sdk_dir("rust"), "--lib", "contract_test",
                       "--", "--nocapture",
                       env={"OMNICORE_CONTRACT_LINES": requests_file.read_text()}))


def _c_string(text: str) -> str:
    return json.dumps(text)  # a JSON string of ASCII is a C string literal


def test_c(tmp_path: Path) -> None:
    """The C test program: SQL answers handed to the test host by omnicore_test.h, Redis the
    test host's in-memory one."""
    project = tmp_path / "c"
    (project / "tests").mkdir(parents=True)
    shutil.copy(DRIVERS / "c" / "driver.c", project / "driver.c")
    body = []
    for line in _requests():
        if "reset" in line:
            body.append("    omni__redis_reset();")
        elif "sql" in line:
            answer = _c_string(json.dumps(line["sql"]))
            body.append(f'    omni_test_sql_answer("SELECT", {answer});')
            body.append('    omni_test_call(query, "");')
        else:
            body.append(f"    omni_test_call(redis, {_c_string(json.dumps(line['redis']))});")
    (project / "tests" / "contract.c").write_text(
        '#include "omnicore_test.h"\n\nOMNI_TEST(contract) {\n' + "\n".join(body) + "\n}\n")
    _check(_unit_tests(unit_tests, project))


def test_ruby(requests_file: Path, tmp_path: Path) -> None:
    project = tmp_path / "ruby"
    shutil.copytree(DRIVERS / "ruby", project)
    shutil.copy(requests_file, project / "requests.jsonl")
    _check(_unit_tests(unit_tests, project))


def test_zig(requests_file: Path, tmp_path: Path) -> None:
    """Zig's test program, run in wasmtime: Redis and the SQL shape check from the runner."""
    project = tmp_path / "zig"
    project.mkdir()
    shutil.copy(DRIVERS / "zig_driver.zig", project / "plugin.zig")
    shutil.copy(requests_file, project / "requests.jsonl")
    _check(_unit_tests(unit_tests, project))


def _kotlin_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$") + '"'


def test_kotlin(tmp_path: Path) -> None:
    """Kotlin's test program (toolchains/kotlin.py's, on the test host): Redis through the
    SDK's RedisConnector (a request it never builds through the driver's own import), SQL
    answers handed over by omnicore.testing's Host.setSql and read back through Rows. Run
    here as `omnicore test` runs it, output kept (the runner shows a passing test's none)."""
    project = tmp_path / "kotlin"
    shutil.copytree(DRIVERS / "kotlin", project)
    lines = ",\n".join(f"    {_kotlin_string(json.dumps(line))}" for line in _requests())
    (project / "tests" / "requests.kt").write_text(f"val REQUESTS = listOf(\n{lines},\n)\n")
    assert [name for name, _ in kotlin.test_names(project)] == ["contract"]
    built = kotlin.build_tests(project)
    assert built is not None
    program = Program(built)
    out = Captured()
    try:
        outcome = program.run(["--run", "0"], out)
    finally:
        program.close()
    printed = out.data.decode("utf-8", "replace")
    assert outcome.code == 0 and outcome.trap is None, printed[-3000:] + str(outcome)
    _check("\n".join(line.partition("CONTRACT ")[2] for line in printed.splitlines()
                     if "CONTRACT " in line))
