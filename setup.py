"""Builds the C call path (``omnicore.sandbox._callpath``), the C plugin log ring
(``omnicore.sandbox._logring``), the C component call (``omnicore.sandbox._compcall``) and
the C OTLP span encoder (``omnicore.telemetry._otlpenc``), all optional: without a compiler
the host runs on the pure-Python sandbox/fastcall.py, sandbox/logring.py and
sandbox/component/flatcall.py's ctypes path, and hands spans to the OpenTelemetry SDK's
encoder. Puts copies of ``sdk/`` and ``web/`` into the wheel: ``omnicore/toolchains/sdk``, so
that ``omnicore new plugin`` and ``omnicore build`` work from an installed wheel too
(``omnicore.toolchains.locations``), and ``omnicore/console/web``, the console's templates and
static assets (``omnicore.console.assets``). Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_py import build_py

_SKIP = shutil.ignore_patterns("target", "node_modules", "__pycache__", "*.wasm")


class BuildPyWithSdk(build_py):  # type: ignore[misc]
    def run(self) -> None:
        if not self.editable_mode:
            # setuptools reuses build/lib: a module deleted or renamed since the last build
            # would still be copied into the wheel beside the new one.
            shutil.rmtree(Path(self.build_lib) / "omnicore", ignore_errors=True)
        super().run()
        if self.editable_mode:
            return  # an editable install imports from the checkout, which has both in place
        root = Path(__file__).parent
        for src, dest in ((root / "sdk", ("toolchains", "sdk")),
                          (root / "web", ("console", "web"))):
            if src.is_dir():
                target = Path(self.build_lib, "omnicore", *dest)
                shutil.rmtree(target, ignore_errors=True)
                shutil.copytree(src, target, ignore=_SKIP)


setup(cmdclass={"build_py": BuildPyWithSdk},
      ext_modules=[Extension("omnicore.sandbox._callpath",
                             [f"host/omnicore/sandbox/{name}.c"
                              for name in ("_callpath", "_hostfunc", "_epoch", "_instantiate")],
                             depends=[f"host/omnicore/sandbox/{name}.h"
                                      for name in ("_pyext", "_capi", "_callpath", "_epoch",
                                                   "_deadline", "_hostfunc", "_instantiate")],
                             extra_compile_args=["-O2", "-Wall", "-Werror"], optional=True),
                   Extension("omnicore.sandbox._compcall",
                             [f"host/omnicore/sandbox/{name}.c"
                              for name in ("_compcall", "_compvalue", "_complane", "_comphost")],
                             depends=[f"host/omnicore/sandbox/{name}.h"
                                      for name in ("_pyext", "_capi", "_compcall", "_epoch",
                                                   "_deadline")],
                             extra_compile_args=["-O2", "-Wall", "-Werror"], optional=True),
                   Extension("omnicore.sandbox._logring",
                             [f"host/omnicore/sandbox/{name}.c" for name in ("_logring", "_logwake")],
                             depends=[f"host/omnicore/sandbox/{name}.h"
                                      for name in ("_pyext", "_logring")],
                             extra_compile_args=["-O2", "-Wall", "-Werror"], optional=True),
                   Extension("omnicore.telemetry._otlpenc",
                             ["host/omnicore/telemetry/_otlpenc.c"],
                             extra_compile_args=["-O2", "-Wall", "-Werror"], optional=True)])
