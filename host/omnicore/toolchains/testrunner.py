"""The runner of ``omnicore test`` for every language whose tests compile to one wasm32-wasi
program (Rust's, C's, Zig's): the program runs on the test host of
:mod:`omnicore.toolchains.testhost` — the built-in capabilities' own code over in-memory
services, every one granted, and ``omnicore:testing`` for the test's control.

``python -m omnicore.toolchains.testrunner PROGRAM.wasm [ARGS...]`` is cargo's runner for
``wasm32-wasi`` (``CARGO_TARGET_WASM32_WASI_RUNNER``): it runs a libtest program one test per
instance (:func:`~omnicore.toolchains.testhost.libtest.run_libtest`); it is ``go test -exec``
too, for a Go test binary, known by its ``-test.*`` flags (:mod:`.testhost.gotest`). C's and
Zig's programs run their tests themselves, once (:func:`run_tests`). AssemblyScript's have a
runner of their own (:mod:`.testhost.astest`).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from omnicore.sandbox.command import Passthrough
from omnicore.toolchains.testhost import Program, run_libtest, sql_answer_problem

__all__ = ["main", "run_tests", "sql_answer_problem"]


def _quiet_plugin_log() -> None:
    # A plugin's log lines are the test's to read (testing::logs), not this process's output.
    logging.getLogger("omnicore.plugin").addHandler(logging.NullHandler())
    logging.getLogger("omnicore.plugin").propagate = False


def run_tests(wasm: Path, args: list[str]) -> int:
    """Run a test program once (its output on ours, ``args`` as its arguments after its
    name); its exit status (C's: the number of failed tests)."""
    _quiet_plugin_log()
    program = Program(wasm)
    try:
        outcome = program.run(args, Passthrough(sys.stdout.buffer, sys.stderr.buffer),
                              after_trap="omni_test_trapped")
    finally:
        program.close()
    if outcome.trap is not None:
        # C's header named the test and printed its log (omni_test_trapped).
        print(f"    {outcome.trap}\nthe tests after it did not run", flush=True)
    return outcome.code


def main(argv: list[str]) -> int:
    """Cargo's runner: ``PROGRAM.wasm [libtest arguments]``; libtest's exit code."""
    if not argv:
        print("usage: python -m omnicore.toolchains.testrunner PROGRAM.wasm [ARGS...]",
              file=sys.stderr)
        return 2
    _quiet_plugin_log()
    program = Program(Path(argv[0]))
    try:
        if any(arg.startswith("-test.") for arg in argv[1:]):
            from omnicore.toolchains.testhost.gotest import run_gotest

            return run_gotest(program, argv[1:])
        return run_libtest(program, argv[1:])
    finally:
        program.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
