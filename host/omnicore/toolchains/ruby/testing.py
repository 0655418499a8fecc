"""``omnicore test`` for a Ruby plugin: its ``test/*_test.rb`` run in the interpreter the
plugin ships (the compiled every-namespace runtime, so no compile), the SDK's test host
(``Omnicore::TestHost``, sdk/ruby/lib/omnicore/testing.rb) standing in for omnicore.

Run as ``python -m omnicore.toolchains.ruby.testing PROJECT``; prints the tests' report and
exits 1 when one failed.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import wasmtime

from omnicore.errors import BuildError
from omnicore.toolchains import locations
from omnicore.toolchains.ruby import boot_script, snapshot, source

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
    with tempfile.TemporaryDirectory(prefix="omnicore-ruby-test-") as tmp:
        stage = Path(tmp) / "stage"
        source.stage(src, locations.sdk_dir("ruby"), stage,
                     boot_script(src, handlers, namespaces, then=_RUN_TESTS), tests=True)
        out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
        store, instance = snapshot.instantiate(stage, out, err)
        init = instance.exports(store)["omni_init"]
        assert isinstance(init, wasmtime.Func)
        try:
            init(store)
            code = 1  # the runner always exits: returning means it never ran
        except wasmtime.ExitTrap as exc:
            code = exc.code
        except (wasmtime.Trap, wasmtime.WasmtimeError) as exc:
            code = 1
            err.write_text(err.read_text(errors="replace") + f"\n{exc}")
        report = out.read_text(errors="replace") + err.read_text(errors="replace")
    return code, report


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
