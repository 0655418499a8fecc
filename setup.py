"""Puts a copy of ``sdk/`` into the wheel (``omnicore/toolchains/sdk``), so that
``omnicore new plugin`` and ``omnicore build`` work from an installed wheel too
(``omnicore.toolchains.locations``). Everything else is in pyproject.toml."""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

_SKIP = shutil.ignore_patterns("target", "node_modules", "__pycache__", "*.wasm")


class BuildPyWithSdk(build_py):  # type: ignore[misc]
    def run(self) -> None:
        if not self.editable_mode:
            # setuptools reuses build/lib: a module deleted or renamed since the last build
            # would still be copied into the wheel beside the new one.
            shutil.rmtree(Path(self.build_lib) / "omnicore", ignore_errors=True)
        super().run()
        src = Path(__file__).parent / "sdk"
        if not self.editable_mode and src.is_dir():
            dest = Path(self.build_lib) / "omnicore" / "toolchains" / "sdk"
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(src, dest, ignore=_SKIP)


setup(cmdclass={"build_py": BuildPyWithSdk})
