"""JavaScript and TypeScript plugins on QuickJS-ng, built without a native toolchain.

The JS runtime (``sdk/js/runtime``: QuickJS-ng + our ABI v1 shim) is compiled once with clang
for ``wasm32-wasi`` and cached; a plugin build then is pure Python with wasmtime. One module
per job:

- :mod:`~omnicore.toolchains.js.source`: the entry file, and the capabilities a source imports;
- :mod:`~omnicore.toolchains.js.runtime`: building the QuickJS runtime (clang, cached);
- :mod:`~omnicore.toolchains.js.npm`: esbuild, tsc and a project's dependencies from npm;
- :mod:`~omnicore.toolchains.js.typecheck`: ``tsc --noEmit`` before TypeScript is bundled;
- :mod:`~omnicore.toolchains.js.statements`: SQL statements are the plugin's constants (build
  and test check them first);
- :mod:`~omnicore.toolchains.js.describe`: handler schemas from TypeScript types;
- :mod:`~omnicore.toolchains.js.bundle` and :mod:`~omnicore.toolchains.js.sourcemap`: one ES
  module from esbuild, with stack traces that name the author's files;
- :mod:`~omnicore.toolchains.js.evaluate`: the runtime run at build time (exports, bytecode,
  the snapshot);
- :mod:`~omnicore.toolchains.js.rewrite`: the runtime module rewritten into one plugin;
- :mod:`~omnicore.toolchains.js.plugin`: the build, step by step;
- :mod:`~omnicore.toolchains.js.testing` and :mod:`~omnicore.toolchains.js.scaffold`: ``node
  --test`` on a project's own tests, and a new project;
- :mod:`~omnicore.toolchains.js.commands`: running those tools under a timeout and a lock.

This face is the language module :mod:`omnicore.toolchains` drives (``LANGUAGE``,
``EXTENSIONS``, ``detect``, ``check``, ``compile``, ``handler_descriptions``, ``lint``,
``scaffold``, ``unit_tests``), plus what
``scripts/setup-toolchains.sh`` and the tests use.
"""

from omnicore.toolchains.js.commands import LANGUAGE
from omnicore.toolchains.js.describe import handler_descriptions
from omnicore.toolchains.js.npm import ensure_esbuild, ensure_tsc, esbuild
from omnicore.toolchains.js.plugin import MAX_HANDLERS, compile
from omnicore.toolchains.js.runtime import check, ensure_runtime, runtime_path
from omnicore.toolchains.js.scaffold import EXTENSIONS, scaffold
from omnicore.toolchains.js.source import CAPABILITIES, detect, used_capabilities
from omnicore.toolchains.js.statements import lint
from omnicore.toolchains.js.testing import unit_tests

__all__ = [
    "CAPABILITIES",
    "EXTENSIONS",
    "LANGUAGE",
    "MAX_HANDLERS",
    "check",
    "compile",
    "detect",
    "ensure_esbuild",
    "ensure_runtime",
    "ensure_tsc",
    "esbuild",
    "handler_descriptions",
    "lint",
    "runtime_path",
    "scaffold",
    "unit_tests",
    "used_capabilities",
]
