"""``omnicore test`` for a Ruby plugin: its ``test/*_test.rb`` run in the interpreter the
plugin ships (the every-namespace runtime the set-up compiled, so no compile) on omnicore's
one test host (:mod:`omnicore.toolchains.testhost`): every ``omnicore:*`` import the SDK
calls is the built-in capability's own code over in-memory services, and
``Omnicore::TestHost`` (sdk/ruby/lib/omnicore/testing.rb) sets it up and reads it back through
the runtime's ``omnicore:testing`` imports.

Run as ``python -m omnicore.toolchains.ruby.testing PROJECT``; prints the tests' report and
exits 1 when one failed.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

from omnicore.errors import BuildError
from omnicore.toolchains import locations
from omnicore.toolchains.ruby import boot_script, runtime, snapshot, source
from omnicore.toolchains.testhost import Program
from omnicore.toolchains.testhost.program import Captured

__all__ = ["main", "run"]

_RUN_TESTS = ('require "omnicore/testing"\nrequire "omnicore/test"\n'
              'Dir["/omnicore/plugin/{test,tests}/**/*_test.rb"].sort.each { |f| require f }\n'
              "failed = Omnicore::Test.run_all\n$stdout.flush\n$stderr.flush\n"
              "exit!(failed.zero? ? 0 : 1)  # proc_exit: the exit code, past the boot's rescue\n")


def run(src: Path) -> tuple[int, str]:
    """Run the project's tests: (exit code, report)."""
    src = src.resolve()
    handlers = source.handler_names(src)
    namespaces = source.used_capabilities(src)
    # A plugin's log lines are the test's to read (TestHost#logs), not this process's output.
    logging.getLogger("omnicore.plugin").addHandler(logging.NullHandler())
    logging.getLogger("omnicore.plugin").propagate = False
    with tempfile.TemporaryDirectory(prefix="omnicore-ruby-test-") as tmp:
        stage = Path(tmp) / "stage"
        source.stage(src, locations.sdk_dir("ruby"), stage,
                     boot_script(src, handlers, namespaces, then=_RUN_TESTS), tests=True)
        eng = runtime.engine()
        program = Program(runtime.runtime_for(None), compiled=(eng, runtime.compiled_all(eng)),
                          handlers=handlers)
        out = Captured()
        try:
            # omni_init starts the interpreter and loads boot.rb, which runs the tests.
            outcome = program.run([], out, entry="omni_init", wasi=snapshot.stage_wasi(stage))
        finally:
            program.close()
    report = out.data.decode("utf-8", "replace")
    if outcome.trap is not None:
        report += f"\n{outcome.trap}"
    # The runner exits with its verdict after its closing line: without it, it never ran.
    ran = " passed, 0 failed" in report
    return (outcome.code if outcome.code or ran else 1), report


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m omnicore.toolchains.ruby.testing PROJECT", file=sys.stderr)
        return 2
    try:
        code, report = run(Path(argv[0]))
    except BuildError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(report, end="")
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
