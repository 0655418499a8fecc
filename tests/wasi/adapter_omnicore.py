"""A WebAssembly/wasi-testsuite runtime adapter for ``omnicore exec`` (preview 1 commands).

The suite is not part of this repository. With a checkout of its ``prod/testsuite-base``
branch (which carries the compiled tests) in SUITE::

    OMNICORE="python -m omnicore.cli" python SUITE/test-runner/wasi_test_runner.py \\
        -r tests/wasi/adapter_omnicore.py \\
        -t SUITE/tests/rust/testsuite/wasm32-wasip1 SUITE/tests/c/testsuite/wasm32-wasip1 \\
           SUITE/tests/assemblyscript/testsuite/wasm32-wasip1

The runner loads this file as a module (its adapter interface: ``get_name``,
``get_version``, ``get_wasi_versions``, ``get_wasi_worlds``, ``compute_argv``); run as a
script it prints nothing, which is how the runner tells a module adapter from a legacy one.
``$OMNICORE`` is the command (default ``omnicore``). The tests' outcomes, and the ones
omnicore refuses on purpose, are in specs/security.md "WASI preview 1 against its suite".
"""

from __future__ import annotations

import os
import shlex
import subprocess

OMNICORE = shlex.split(os.getenv("OMNICORE", "omnicore"))


def get_name() -> str:
    return "omnicore"


def get_version() -> str:
    out = subprocess.run([*OMNICORE, "--version"], capture_output=True, text=True,
                         check=True).stdout
    return out.strip().split()[-1]


def get_wasi_versions() -> list[str]:
    return ["wasm32-wasip1"]


def get_wasi_worlds() -> list[str]:
    return ["wasi:cli/command"]


def get_timeout_seconds() -> float:
    # A test compiles its module first (Cranelift, a few seconds for the Rust ones on a
    # loaded machine) unless the user's module cache has it.
    return 60.0


def compute_argv(test_path: str, args_env_root: tuple[list[str], dict[str, str], str | None],
                 proposals: list[str], wasi_world: str, wasi_version: str) -> list[str]:
    args, env, root = args_env_root
    argv = [*OMNICORE, "exec"]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    if root:
        argv += ["--dir", f"{root}::/"]
    return [*argv, test_path, "--", *args]
