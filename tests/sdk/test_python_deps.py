"""A Python plugin's third-party packages (``requirements.txt``, toolchains/python.py): pip
installs them for the component's own CPython, pure-Python wheels only, and the build and
``omnicore test`` both see them. Offline: the packages are wheels this test writes into a
local folder, handed to pip through its own configuration (PIP_NO_INDEX, PIP_FIND_LINKS).
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
import uuid
import zipfile
from pathlib import Path

import pytest

from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import BuildError
from omnicore.sandbox import PluginModule, SandboxEngine
from omnicore.sandbox.component import ComponentRuntime
from omnicore.sandbox.limits import Limits
from omnicore.toolchains import build, python, unit_tests
from tests.compiler import BASELINE

pytestmark = pytest.mark.timeout(900)

SLUG = '''"""A small pure-Python package, as a plugin author would take from PyPI."""
import re


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
'''


def _wheel(folder: Path, name: str, version: str, tag: str, files: dict[str, str]) -> Path:
    """A wheel as pip expects one (PEP 427): the files, METADATA, WHEEL and RECORD."""
    dist = f"{name.replace('-', '_')}-{version}"
    path = folder / f"{dist}-{tag}.whl"
    pure = "true" if "none-any" in tag else "false"
    meta = {f"{dist}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\n"
                                           f"Version: {version}\n",
            f"{dist}.dist-info/WHEEL": f"Wheel-Version: 1.0\nGenerator: test\n"
                                        f"Root-Is-Purelib: {pure}\nTag: {tag}\n"}
    entries = {**files, **meta}
    record = []
    with zipfile.ZipFile(path, "w") as zf:
        for arc, text in entries.items():
            data = text.encode()
            zf.writestr(arc, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            record.append(f"{arc},sha256={digest.decode()},{len(data)}")
        record.append(f"{dist}.dist-info/RECORD,,")
        zf.writestr(f"{dist}.dist-info/RECORD", "\n".join(record) + "\n")
    return path


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A wheelhouse pip uses instead of an index: one pure package, one compiled-only one."""
    house = tmp_path / "wheelhouse"
    house.mkdir()
    _wheel(house, "omni-slug", "1.0", "py3-none-any", {"omni_slug/__init__.py": SLUG})
    _wheel(house, "omni-speedups", "1.0", "cp311-cp311-linux_x86_64",
           {"omni_speedups/__init__.py": "x = 1\n"})
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(house))
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    return house


def _project(root: Path, requirements: str) -> Path:
    project = root / "slugger"
    project.mkdir()
    # A line unique to this run: the installed packages are cached by the file's content,
    # and this test must see pip run.
    (project / "requirements.txt").write_text(f"# run {uuid.uuid4()}\n{requirements}\n")
    (project / "plugin.py").write_text(
        "from omni_slug import slug as _slug\n\nfrom omnicore_plugin import handler\n\n\n"
        "@handler\ndef slug(data: bytes) -> str:\n    return _slug(data.decode())\n")
    (project / "test_plugin.py").write_text(
        "import plugin  # noqa: F401\nfrom omnicore_plugin.testing import TestHost\n\n\n"
        "def test_slug():\n    with TestHost() as host:\n"
        "        assert host.call('slug', 'Hello, World!') == b'hello-world'\n")
    return project


def test_a_pure_python_package_is_installed_for_omnicore_test(tmp_path: Path,
                                                              offline: Path) -> None:
    project = _project(tmp_path, "omni-slug==1.0")
    deps = python.dependencies(project)
    assert deps is not None and (deps / "omni_slug" / "__init__.py").is_file()
    assert python.dependencies(project) == deps  # installed once, then reused
    tests = unit_tests(project)
    done = subprocess.run(tests.argv, cwd=tests.cwd, env=tests.env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr


def test_a_pure_python_package_runs_inside_the_component(tmp_path: Path, offline: Path) -> None:
    project = _project(tmp_path, "omni-slug==1.0")
    wasm = build(project, tmp_path / "out")
    engine = SandboxEngine(cache_dir=tmp_path / "cache", baseline=BASELINE)
    try:
        module = PluginModule.load(engine, wasm)
        with ComponentRuntime(engine, module, Limits(),  # type: ignore[arg-type]
                              registry=builtin_registry()) as rt:
            assert rt.call("slug", b"Hello, World!") == b"hello-world"
    finally:
        engine.close()


def test_a_compiled_only_package_is_refused_at_build_saying_why(tmp_path: Path,
                                                                offline: Path) -> None:
    project = _project(tmp_path, "omni-speedups==1.0")
    with pytest.raises(BuildError, match=r"pure-Python packages only.*py3-none-any") as info:
        python.compile(project, tmp_path / "work")
    assert "omni-speedups" in str(info.value) and "requirements.txt" in str(info.value)
    # Nothing half-installed is kept for the next build to trust.
    assert not list((python.locations.cache_dir() / "python-deps").glob("*.partial"))


def test_a_package_pip_cannot_find_is_refused_naming_it(tmp_path: Path, offline: Path) -> None:
    project = _project(tmp_path, "omni-nowhere-to-be-found>=1")
    with pytest.raises(BuildError, match="omni-nowhere-to-be-found"):
        python.dependencies(project)


def test_without_requirements_nothing_is_installed(tmp_path: Path) -> None:
    (tmp_path / "plugin.py").write_text("")
    assert python.dependencies(tmp_path) is None
