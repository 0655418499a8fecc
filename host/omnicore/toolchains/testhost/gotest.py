"""A Go test binary (``GOOS=wasip1 GOARCH=wasm go test``) driven one test per instance.

``go test -exec`` hands the runner the binary and its ``-test.*`` flags. The runner asks the
binary for its tests (``-test.list``, with the top level of the caller's ``-test.run``), runs
each alone in a fresh instance on a fresh host (``-test.run=^Name$``, the caller's subtest
pattern after it: subtests share their parent's instance), and prints what each run printed
without its closing ``PASS``/``FAIL``, then one verdict, as a binary running every test does:
``go test`` reads that as it reads its own binaries. A test that panics or exits ends only
its own instance.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence

from omnicore.toolchains.testhost.program import Captured, Program

__all__ = ["run_gotest"]

#: What a Go test binary ends with (after go test's test2json marker, when -json).
_VERDICT = re.compile(rb"^\x16?(PASS|FAIL|ok\b.*)\s*$")
_NO_TESTS = b"testing: warning: no tests to run\n"
#: Names -test.list answers that -test.run runs (benchmarks run with -test.bench only).
_RUNNABLE = ("Test", "Example", "Fuzz")


def _flag(args: Sequence[str], name: str) -> tuple[str | None, list[str]]:
    """The value of ``-test.<name>`` in ``args`` (``=value`` or the next argument), and the
    arguments without it."""
    value, rest, i = None, [], 0
    while i < len(args):
        arg = args[i]
        if arg in (f"-test.{name}", f"--test.{name}") and i + 1 < len(args):
            value, i = args[i + 1], i + 2
            continue
        if arg.startswith((f"-test.{name}=", f"--test.{name}=")):
            value = arg.partition("=")[2]
        else:
            rest.append(arg)
        i += 1
    return value, rest


def _split(pattern: str) -> tuple[str, str | None]:
    """A -test.run pattern's top level and the subtest levels after it (Go splits at each
    ``/`` outside brackets and parentheses)."""
    depth = 0
    for i, char in enumerate(pattern):
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        elif char == "/" and depth == 0:
            return pattern[:i], pattern[i + 1:]
    return pattern, None


def _listed(program: Program, pattern: str) -> list[str]:
    out = Captured()
    outcome = program.run([f"-test.list={pattern}"], out)
    text = out.data.decode("utf-8", "replace")
    if outcome.code != 0:
        raise SystemExit(f"the test binary could not list its tests:\n{text}"
                         f"{outcome.trap or ''}")
    return [name for name in text.split() if name.startswith(_RUNNABLE)]


def _write(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def run_gotest(program: Program, args: Sequence[str]) -> int:
    """Run the tests ``args`` (go test's ``-test.*`` flags) select; 0 when all passed."""
    if any(a.startswith(("-test.list", "-test.bench", "-test.fuzz")) for a in args):
        # Listing, benchmarks and fuzzing: the binary's own answer, in one instance.
        return run_gotest_once(program, list(args))
    pattern, rest = _flag(args, "run")
    top, sub = _split(pattern or "")
    names = _listed(program, top or ".*")
    if not names:  # the binary's own "no tests to run" (and its TestMain, if any)
        return run_gotest_once(program, list(args))
    failed = False
    for name in names:
        selected = f"^{re.escape(name)}$" + (f"/{sub}" if sub is not None else "")
        out = Captured()
        outcome = program.run([*rest, f"-test.run={selected}"], out)
        lines = bytes(out.data).splitlines(keepends=True)
        if lines and _VERDICT.match(lines[-1]):
            lines.pop()
        text = b"".join(line for line in lines if line != _NO_TESTS)
        if outcome.trap is not None:
            text += f"--- FAIL: {name}\n    the test trapped: {outcome.trap}\n".encode()
        elif outcome.code != 0 and b"--- FAIL" not in text:  # os.Exit in the test
            text += f"--- FAIL: {name}\n    the test exited with status {outcome.code}\n".encode()
        failed = failed or outcome.code != 0
        _write(text)
        if failed and {"-test.failfast", "-test.failfast=true"} & set(rest):
            break
    _write(b"FAIL\n" if failed else b"PASS\n")
    return 1 if failed else 0


def run_gotest_once(program: Program, args: list[str]) -> int:
    """The binary run once, as it is: its output and exit code."""
    out = Captured()
    outcome = program.run(args, out)
    _write(bytes(out.data) + (f"{outcome.trap}\n".encode() if outcome.trap else b""))
    return outcome.code
