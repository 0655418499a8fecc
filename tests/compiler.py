"""Which compiler the tests' engines and hosts compile plugins with: Winch by default.

Nearly every test is about what a plugin does (its answers, limits, traps, host functions),
not how fast its code runs, and Winch, wasmtime's baseline compiler, compiles for about an
eighth of Cranelift's CPU: a Ruby plugin 6 CPU-s against 45, a Python component 5 against 17.
Both are wasmtime's: the limits, deadlines, fuel and traps are the runtime's, and a cold start
serves Winch's code anyway (omnicore.plugins.tiers). Importing this module (conftest does)
sets ``OMNICORE_SANDBOX__COMPILER`` for every host and CLI the tests start, unless it is set:
``OMNICORE_SANDBOX__COMPILER=cranelift scripts/dev test`` runs the suite on Cranelift's code.

The tests of the compilers themselves (tiers, cache keys, precompile, the image, benches)
choose their engines' compiler in their own code.
"""

from __future__ import annotations

import os

__all__ = ["BASELINE", "COMPILER", "ENVIRON"]

#: ``sandbox.compiler`` for the tests' hosts: ``winch`` or ``cranelift``.
COMPILER = os.environ.setdefault("OMNICORE_SANDBOX__COMPILER", "winch")
#: ``SandboxEngine(baseline=...)`` for the tests' own engines.
BASELINE = COMPILER == "winch"
#: The ``environ`` of an in-process app that must not read the rest of this process's.
ENVIRON = {"OMNICORE_SANDBOX__COMPILER": COMPILER}
