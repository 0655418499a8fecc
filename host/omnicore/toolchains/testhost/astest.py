"""AssemblyScript's tests run one per instance, on the test host every language's tests use.

``omnicore test`` builds a project's ``*.test.ts`` with the SDK's ``omnicore/testing`` into one
wasm32-wasi program (:func:`omnicore.toolchains.assemblyscript.unit_tests`): its top-level
``test(name, body)`` calls register the tests as the module starts, and its ``_start`` prints
their names (``--list``) or runs one (``--run I``). The runner lists them, runs each alone in a
fresh instance on a fresh host, and prints ``test NAME ... ok`` or ``FAILED`` with why (the
SDK's abort logs a throw's message, then traps) and the test's log, then a summary::

    python -m omnicore.toolchains.testhost.astest TESTS.wasm [NAME-PART...]

Names given select the tests whose name contains one of them. The exit code is 1 when a test
failed or the program has none, 2 for an option (there are none), else 0.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from omnicore.toolchains.testhost.program import Captured, Program

__all__ = ["main", "run_astest"]

_ABORT = "abort: "


def _listed(program: Program) -> list[str]:
    out = Captured()
    outcome = program.run(["--list"], out)
    text = out.data.decode("utf-8", "replace")
    if outcome.code != 0:
        log = "".join(f"{line.level.upper()} {line.message}\n"
                      for line in program.current.host.log.lines())
        raise SystemExit(f"the test program could not list its tests:\n{text}{log}"
                         f"{outcome.trap or ''}")
    return text.splitlines()


def _why(trap: str | None, messages: list[str]) -> str:
    """A failed test's cause: the message the SDK's abort logged, else the trap's."""
    aborts = [m[len(_ABORT):] for m in messages if m.startswith(_ABORT)]
    if aborts:
        return aborts[-1]
    if trap is None:
        return "the test failed"
    _, found, cause = trap.rpartition("wasm trap: ")
    return f"the test trapped: {cause.strip() if found else trap.strip().splitlines()[0]}"


def _indent(text: str, prefix: str) -> str:
    return "".join(f"{prefix}{line}\n" for line in text.splitlines() or [""])


#: What the runner says to a program with no tests.
NO_TESTS = "no tests: register them with test(name, () => {...}) in *.test.ts"


def run_astest(program: Program, args: Sequence[str], *, none: str = NO_TESTS) -> int:
    """Run the tests whose names contain one of ``args`` (all without); 1 when one failed.
    Kotlin's test programs (toolchains/kotlin.py) answer ``--list`` and ``--run I`` the same
    way and run here too (``none``: what to say when there are no tests)."""
    options = [a for a in args if a.startswith("-")]
    if options:
        print(f"unknown option {options[0]}: the arguments are parts of test names",
              file=sys.stderr)
        return 2
    names = _listed(program)
    if not names:
        print(none)
        return 1
    chosen = [(i, n) for i, n in enumerate(names) if not args or any(a in n for a in args)]
    started = time.monotonic()
    print(f"\nrunning {len(chosen)} test{'' if len(chosen) == 1 else 's'}", flush=True)
    failed = 0
    for i, name in chosen:
        out = Captured()
        outcome = program.run(["--run", str(i)], out)
        if outcome.code == 0 and outcome.trap is None:
            print(f"test {name} ... ok", flush=True)
            continue
        failed += 1
        lines = program.current.host.log.lines()
        why = _why(outcome.trap, [line.message for line in lines])
        print(f"test {name} ... FAILED\n" + _indent(why, "    "), end="")
        # The abort's line is the cause shown above.
        lines = [line for line in lines if not line.message.startswith(_ABORT)]
        printed = out.data.decode("utf-8", "replace").rstrip()
        if printed:
            print("    output:\n" + _indent(printed, "      "), end="")
        if lines:
            print("    log:\n" + "".join(_indent(f"{line.level.upper()} {line.message}", "      ")
                                        for line in lines), end="")
        sys.stdout.flush()
    verdict = "FAILED" if failed else "ok"
    print(f"\ntest result: {verdict}. {len(chosen) - failed} passed; {failed} failed; "
          f"{len(names) - len(chosen)} filtered out; finished in "
          f"{time.monotonic() - started:.2f}s\n", flush=True)
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python -m omnicore.toolchains.testhost.astest TESTS.wasm [NAME-PART...]",
              file=sys.stderr)
        return 2
    # A plugin's log lines are the test's to read (testing's logs()), not this process's.
    logging.getLogger("omnicore.plugin").addHandler(logging.NullHandler())
    logging.getLogger("omnicore.plugin").propagate = False
    program = Program(Path(argv[0]))
    try:
        return run_astest(program, argv[1:])
    finally:
        program.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
