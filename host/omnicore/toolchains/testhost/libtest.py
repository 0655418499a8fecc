"""Rust's test harness (libtest) driven one test per instance, as ``cargo test`` prints it.

On wasm a panic aborts (``panic = "abort"``): libtest cannot catch it, and a program running
every test would stop at the first failure with the others unreported. So the runner asks the
program for its tests (``--list --format terse``, with the caller's filters), runs each alone
in a fresh instance (``NAME --exact --nocapture``; its output kept here and shown only when it
fails, as libtest does), and prints libtest's lines and summary with libtest's exit code.
"""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Sequence

from omnicore.toolchains.testhost.program import Captured, Program

__all__ = ["run_libtest"]

#: Arguments about how to run or show tests, not which: never passed to the listing.
_RUN_FLAGS = {"--nocapture", "--show-output", "-q", "--quiet", "--test", "--bench"}
_RUN_OPTIONS = {"--test-threads", "--color", "--format", "--logfile", "-Z", "--report-time"}
#: Which ignored tests run, passed to each test's own run as well.
_IGNORED = {"--ignored", "--include-ignored"}
_SUMMARY = re.compile(r"(\d+) passed; (\d+) failed; (\d+) ignored")
#: libtest's exit code when a test failed.
FAILED = 101


def _selection(args: Sequence[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg in _RUN_FLAGS:
            continue
        elif arg in _RUN_OPTIONS:
            skip = True
        elif arg.split("=", 1)[0] in _RUN_OPTIONS:
            continue
        else:
            out.append(arg)
    return out


def _listed(program: Program, args: Sequence[str]) -> list[str]:
    out = Captured()
    outcome = program.run(["--list", "--format", "terse", *args], out)
    text = out.data.decode("utf-8", "replace")
    if outcome.code != 0:
        raise SystemExit(f"the test program could not list its tests:\n{text}"
                         f"{outcome.trap or ''}")
    return [line[:-len(": test")] for line in text.splitlines() if line.endswith(": test")]


def run_libtest(program: Program, args: Sequence[str]) -> int:
    """Run the tests ``args`` select; libtest's exit code (0, or 101 when one failed)."""
    if "--list" in args:  # cargo test -- --list: the program's own answer
        return program.run(list(args), _Stdout()).code
    selection = _selection(args)
    names = _listed(program, selection)
    filtered = len(_listed(program, [a for a in selection if a in _IGNORED])) - len(names)
    nocapture = "--nocapture" in args or "--show-output" in args
    ignored_flags = [a for a in args if a in _IGNORED]
    started = time.monotonic()
    print(f"\nrunning {len(names)} test{'' if len(names) == 1 else 's'}", flush=True)
    passed, failed, ignored = 0, [], 0
    for name in names:
        out = Captured()
        outcome = program.run([name, "--exact", "--nocapture", "--test-threads=1",
                               *ignored_flags], out)
        text = out.data.decode("utf-8", "replace")
        counts = [tuple(map(int, m)) for m in _SUMMARY.findall(text)]
        if outcome.code == 0 and counts and counts[-1][2] == 1:
            ignored += 1
            print(f"test {name} ... ignored", flush=True)
        elif outcome.code == 0 and counts and counts[-1][0] == 1:
            passed += 1
            print(f"test {name} ... ok", flush=True)
            if nocapture:
                sys.stdout.write(_own_lines(text, name))
        else:
            if outcome.trap:
                text += f"\nthe test trapped: {_cause(outcome.trap)}\n"
            failed.append((name, text))
            print(f"test {name} ... FAILED", flush=True)
    if failed:
        print("\nfailures:\n")
        for name, text in failed:
            print(f"---- {name} stdout ----\n{_own_lines(text, name)}")
        print("\nfailures:")
        for name, _ in failed:
            print(f"    {name}")
    verdict = "FAILED" if failed else "ok"
    print(f"\ntest result: {verdict}. {passed} passed; {len(failed)} failed; {ignored} ignored; "
          f"0 measured; {filtered} filtered out; finished in "
          f"{time.monotonic() - started:.2f}s\n", flush=True)
    return FAILED if failed else 0


def _cause(message: str) -> str:
    """A trap's cause without wasmtime's backtrace (the panic message above it says where)."""
    _, found, cause = message.rpartition("wasm trap: ")
    return cause.strip() if found else message.strip().splitlines()[0]


def _own_lines(text: str, name: str) -> str:
    """What the test itself printed: libtest's own lines about the one-test run taken out."""
    keep = []
    for line in text.splitlines(keepends=True):
        # With --nocapture what the test prints follows libtest's "test NAME ... " at once.
        line = line.removeprefix(f"test {name} ... ")
        if not line.startswith(("running 1 test", "test result: ")) and \
                line.strip() not in ("", "ok", "FAILED", "successes:", "failures:"):
            keep.append(line)
    return "".join(keep)


class _Stdout:
    def write(self, fd: int, data: bytes) -> None:
        stream = sys.stdout.buffer if fd == 1 else sys.stderr.buffer
        stream.write(data)
        stream.flush()

    def close(self) -> None:
        pass
