"""The host ``omnicore test`` runs a plugin's unit tests on, written once for every language
whose tests compile to a wasm32-wasi program.

A test program imports what a plugin imports (``omnicore:kv``, ``omnicore:http``, ...) and
``omnicore:testing``; each of its tests runs in a fresh instance on a fresh host::

    program.py   Program: compiled and linked once; run() = a new instance on a new TestHost
    host.py      TestHost: the built-in capabilities' own code, every one granted, bound to
                 the test's config, grants and services; link() defines them in the linker
    services.py  the services behind them, in memory: jobs, events, secrets, the answers the
                 test scripted for the next HTTP request and SQL statement
    control.py   omnicore:testing: set up the test's host, read back what the plugin did
    connectors.py  HTTP and SQL answering what the test scripted, Redis in memory
    libtest.py   Rust's harness run one test per instance, reported as cargo test does
    gotest.py    Go's test binary run one test per instance, reported as go test does
    astest.py    AssemblyScript's tests (omnicore/testing) run one per instance
    native.py    the same host for a plugin running in this process (Python's, under pytest):
                 a capability's WIT functions called with Python values
    served.py    native.py's host served to a process that cannot import it (Node's tests)

``omnicore.toolchains.testrunner`` is the command that runs a program on it.
"""

from omnicore.toolchains.testhost.libtest import run_libtest
from omnicore.toolchains.testhost.program import Outcome, Program
from omnicore.toolchains.testhost.services import sql_answer_problem

__all__ = ["Outcome", "Program", "run_libtest", "sql_answer_problem"]
