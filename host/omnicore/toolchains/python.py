"""Python plugins: CPython inside a WebAssembly component, built by componentize-py.

A project is a folder with ``plugin.py`` (and ``omnicore.toml``), or a single ``.py`` file.
Handlers are the functions decorated with ``@handler``/``@json_handler`` from the SDK
(``sdk/python/omnicore_plugin``). The build reads the sources without running them: the
decorated functions are the manifest's handlers, and the SDK capability modules they import
(``from omnicore_plugin import kv``) are the ``omnicore:plugin`` interfaces the component
imports, and so the grants it requests. componentize-py (PyPI, in the venv) then builds a
world of just those imports around the plugin, the SDK and the Python standard library.

Why componentize-py and not a small interpreter on ABI v1: it is the full CPython with its
standard library, and pure-Python code runs unchanged; the price is an 18 MB component
that takes seconds to compile once (cached after; see sdk/python/README.md for numbers).

Third-party packages are named in pip's own ``requirements.txt`` beside ``plugin.py``. pip
installs them for the CPython inside the component, wheels only and pure-Python ones only
(``py3-none-any``): a compiled extension cannot load inside WebAssembly, and with no sdists
no package's setup code runs on the build machine. pip's own configuration (an index, a
``--find-links`` folder for offline builds) applies as for any pip install.
"""

from __future__ import annotations

import ast
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from string import Template
from typing import Any

from omnicore.errors import BuildError
from omnicore.toolchains import UnitTests, locations, pyschema, pystatements
from omnicore.toolchains.project import write_templates

__all__ = ["CAPABILITIES", "EXTENSIONS", "GUEST_PYTHON", "HELPERS", "LANGUAGE", "SDK_FOLDERS",
           "check", "compile", "dependencies", "detect", "handler_descriptions",
           "handler_names", "lint", "scaffold", "unit_tests", "used_capabilities"]

LANGUAGE = "python"
EXTENSIONS = ("python", "py")
#: The SDK folders a build depends on (a change there rebuilds every Python plugin).
SDK_FOLDERS = ("python", "wit")
#: The modules of omnicore.toolchains besides this one that shape a build.
HELPERS = ("pyschema", "pystatements")
#: The SDK's capability modules, each the ``omnicore:plugin`` interface of the same name.
CAPABILITIES = ("log", "config", "kv", "memory", "vectors", "secrets", "tasks", "events", "http",
                "sql", "redis")
_SDK_PACKAGE = "omnicore_plugin"
_DECORATORS = ("handler", "json_handler")
_ENTRY = "plugin.py"
_TEMPLATES = Path(__file__).parent / "templates" / "python"
_SKIP = {"tests", "build", "__pycache__", ".venv", "venv"}
#: componentize-py is given this long (it runs CPython on the plugin to snapshot it).
_TIMEOUT_S = 600
_REQUIREMENTS = "requirements.txt"
#: The CPython inside componentize-py 0.25's components: dependencies are chosen for it.
GUEST_PYTHON = "3.14"
#: pip is given this long to fetch and unpack a project's dependencies.
_PIP_TIMEOUT_S = 300


def detect(src: Path) -> bool:
    """A folder with ``plugin.py``, or a ``.py`` file."""
    if src.is_file():
        return src.suffix == ".py"
    return (src / _ENTRY).is_file()


def _tool() -> str | None:
    return locations.program("componentize-py")


def programs() -> list[str | None]:
    return [_tool()]


def check() -> str | None:
    """None when componentize-py and the SDK are there, else what to install."""
    if _tool() is None:
        return ("componentize-py is not installed: pip install componentize-py (it is in "
                "omnicore's dev extras; scripts/setup-toolchains.sh installs them)")
    if not (locations.sdk_dir("python") / _SDK_PACKAGE).is_dir():
        return f"the Python SDK is missing at {locations.sdk_dir('python')}"
    if not (locations.sdk_dir("wit") / "plugin.wit").is_file():
        return f"the omnicore WIT package is missing at {locations.sdk_dir('wit')}"
    return None


def _sources(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    return sorted(p for p in src.rglob("*.py")
                  if not _SKIP & set(p.relative_to(src).parts[:-1])
                  and not p.name.startswith("test_"))


def _parse(path: Path) -> ast.Module:
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except SyntaxError as exc:
        raise BuildError(f"{path.name}:{exc.lineno}: {exc.msg}", plugin=path.stem,
                         toolchain=LANGUAGE) from None


def used_capabilities(src: Path) -> list[str]:
    """The SDK capability modules the sources import (``log`` always: every plugin has it)."""
    used = {"log"}
    for path in _sources(src):
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.ImportFrom) and node.module == _SDK_PACKAGE:
                used.update(a.name for a in node.names if a.name in CAPABILITIES)
            elif isinstance(node, ast.ImportFrom) and node.module and \
                    node.module.startswith(_SDK_PACKAGE + "."):
                used.add(node.module.split(".")[1])
            elif isinstance(node, ast.Import):
                used.update(a.name.split(".")[1] for a in node.names
                            if a.name.startswith(_SDK_PACKAGE + "."))
    return [c for c in CAPABILITIES if c in used]


def lint(src: Path) -> None:
    """BuildError when a SQL statement in the sources is not the plugin's constant (every
    ``.query``/``.execute`` call of a plugin that imports ``sql``: omnicore.toolchains.
    pystatements has the rule). ``omnicore build`` and ``omnicore test`` run it first."""
    if "sql" not in used_capabilities(src):
        return
    root = src.parent if src.is_file() else src
    found = [problem for path in _sources(src)
             for problem in pystatements.problems(_parse(path), path.relative_to(root))]
    if found:
        head = (f"{len(found)} SQL statement{'s' if len(found) > 1 else ''} built at run "
                f"time, refused:")
        raise BuildError("\n".join([head, *(str(p) for p in found), pystatements.HINT]),
                         plugin=src.stem, toolchain=LANGUAGE)


def _decorators(tree: ast.Module) -> frozenset[str]:
    """The names a module's handler decorators go by: ``handler`` and ``json_handler`` (also as
    ``routes.handler``, the route helper), and what an import renames them to (``from
    omnicore_plugin.routes import handler as route``)."""
    names = set(_DECORATORS)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 \
                and (node.module or "").split(".")[0] == _SDK_PACKAGE:
            names.update(a.asname for a in node.names if a.name in _DECORATORS and a.asname)
    return frozenset(names)


def _decorated_name(fn: ast.FunctionDef, deco: ast.expr, decorators: frozenset[str]) -> str | None:
    target = deco.func if isinstance(deco, ast.Call) else deco
    name = target.attr if isinstance(target, ast.Attribute) else \
        target.id if isinstance(target, ast.Name) else None
    if name not in decorators:
        return None
    if isinstance(deco, ast.Call):
        for kw in deco.keywords:
            if kw.arg == "name" and isinstance(kw.value, ast.Constant) and \
                    isinstance(kw.value.value, str):
                return kw.value.value
    return fn.name


def handler_names(src: Path) -> list[str]:
    """The handlers the sources declare (``@handler``/``@json_handler``/``@routes.handler``),
    in source order."""
    names: list[str] = []
    for path in _sources(src):
        tree = _parse(path)
        decorators = _decorators(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                for deco in node.decorator_list:
                    name = _decorated_name(node, deco, decorators)
                    if name is not None and name not in names:
                        names.append(name)
    if not names:
        raise BuildError(f"{src.name}: no handler (decorate a function with "
                         "@omnicore_plugin.handler)", plugin=src.stem, toolchain=LANGUAGE)
    return names


def handler_descriptions(src: Path) -> dict[str, dict[str, Any]]:
    """What each handler's annotations, docstring and decorator say of it, by handler
    (omnicore.toolchains.pyschema), read without running the sources."""
    trees = [_parse(path) for path in _sources(src)]
    classes = {node.name: node for tree in trees for node in tree.body
               if isinstance(node, ast.ClassDef)}
    out: dict[str, dict[str, Any]] = {}
    for tree in trees:
        decorators = _decorators(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef):
                continue
            for deco in node.decorator_list:
                name = _decorated_name(node, deco, decorators)
                if name is None:
                    continue
                keywords: dict[str, object] = {
                    kw.arg: kw.value.value for kw in getattr(deco, "keywords", ())
                    if kw.arg and isinstance(kw.value, ast.Constant)}
                entry = pyschema.describe(node, classes, keywords)
                if entry:
                    out[name] = entry
    return out


def _world(capabilities: list[str]) -> str:
    imports = "".join(f"  import {c};\n" for c in capabilities)
    return (f"package omnicore:plugin@1.0.0;\n\n/// Written by `omnicore build`: the imports "
            f"this plugin's code uses.\nworld build {{\n{imports}  export handler;\n}}\n")


def compile(src: Path, work: Path) -> bytes:
    """Build the component: the plugin, the SDK and CPython, its world cut to what it uses."""
    tool = _tool()
    assert tool is not None  # check() ran first
    handler_names(src)  # a project without a handler fails here, not in componentize-py
    wit = work / "wit"
    shutil.rmtree(wit, ignore_errors=True)
    wit.mkdir(parents=True)
    capabilities = used_capabilities(src)
    shutil.copy(locations.sdk_dir("wit") / "plugin.wit", wit / "plugin.wit")
    (wit / "build.wit").write_text(_world(capabilities), encoding="utf-8")
    module = src.stem if src.is_file() else _ENTRY.removesuffix(".py")
    # componentize-py keeps what the entry imported while it snapshots the interpreter, and
    # the SDK finds the bindings at first use: import them here, or they are gone.
    bindings = "".join(f"import wit_world.imports.{c}  # noqa: F401\n" for c in capabilities)
    (work / "omnicore_entry.py").write_text(
        f"{bindings}import {module}  # noqa: F401 - its handlers register themselves\n"
        "from omnicore_plugin._component import Handler  # noqa: F401\n", encoding="utf-8")
    out = work / "plugin.wasm"
    out.unlink(missing_ok=True)
    code_dir = src.parent if src.is_file() else src
    deps = dependencies(src)
    argv = [tool, "-d", str(wit), "-w", "build", "componentize",
            "-p", str(code_dir), "-p", str(locations.sdk_dir("python")), "-p", str(work),
            *(["-p", str(deps)] if deps is not None else []),
            "omnicore_entry", "-o", str(out)]
    try:
        done = subprocess.run(argv, cwd=work, capture_output=True, text=True,
                              timeout=_TIMEOUT_S,
                              env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    except subprocess.TimeoutExpired:
        raise BuildError(f"componentize-py took over {_TIMEOUT_S} s on {src.name}",
                         plugin=src.stem, toolchain=LANGUAGE) from None
    if done.returncode != 0 or not out.is_file():
        raise BuildError(f"componentize-py failed on {src.name}:\n{_reason(done.stderr)}",
                         plugin=src.stem, toolchain=LANGUAGE)
    wasm = out.read_bytes()
    out.unlink()  # 18 MB that the build output holds already
    return wasm


def dependencies(src: Path) -> Path | None:
    """The folder holding the project's ``requirements.txt`` packages, installed by pip for
    the guest's CPython (once per distinct file: later builds and tests reuse it); None when
    the project names none. BuildError when pip cannot install them as pure-Python wheels."""
    project = src.parent if src.is_file() else src
    req = project / _REQUIREMENTS
    if not req.is_file():
        return None
    text = req.read_bytes()
    key = hashlib.sha256(GUEST_PYTHON.encode() + b"\0" + text).hexdigest()[:24]
    target = locations.cache_dir() / "python-deps" / key
    with locations.locked(target.with_name(f"{key}.lock")):
        if target.is_dir():
            return target
        staging = target.with_name(f"{key}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        argv = [sys.executable, "-m", "pip", "install", "--quiet", "--no-input",
                "--disable-pip-version-check", "--no-compile", "--target", str(staging),
                "--only-binary=:all:", "--platform", "any", "--implementation", "py",
                "--python-version", GUEST_PYTHON, "-r", str(req)]
        try:
            done = subprocess.run(argv, cwd=project, capture_output=True, text=True,
                                  timeout=_PIP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            shutil.rmtree(staging, ignore_errors=True)
            raise BuildError(f"pip took over {_PIP_TIMEOUT_S} s installing {req.name} of "
                             f"{project.name}", plugin=project.name, toolchain=LANGUAGE) from None
        if done.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            said = " ".join(ln.strip() for ln in done.stderr.splitlines()
                            if ln.startswith("ERROR"))[-2000:] or done.stderr.strip()[-2000:]
            raise BuildError(
                f"cannot install the packages in {req} for the plugin's Python "
                f"{GUEST_PYTHON}: {said}. A Python plugin can use pure-Python packages only "
                "(a wheel tagged py3-none-any): compiled extensions do not load inside "
                "WebAssembly", plugin=project.name, toolchain=LANGUAGE)
        # pip's console scripts are for a shell, not for the component.
        shutil.rmtree(staging / "bin", ignore_errors=True)
        staging.replace(target)  # whole or absent: a killed install is redone next time
    return target


def _reason(stderr: str) -> str:
    """componentize-py's error without its Rust backtrace."""
    text = stderr.split("\nStack backtrace:", 1)[0].strip()
    return text[-4000:]


def scaffold(dest: Path, name: str, lang: str) -> None:
    """A Python plugin project that builds as is."""
    if lang not in EXTENSIONS:
        raise BuildError(f"the Python toolchain does not scaffold {lang!r}")
    dest.mkdir(parents=True, exist_ok=True)
    write_templates(_TEMPLATES.glob("*.tmpl"), _TEMPLATES, dest,
                    lambda text: Template(text).substitute(name=name))


def unit_tests(src: Path) -> UnitTests:
    """pytest on the project's own tests in omnicore's interpreter, with the SDK on the path:
    ``omnicore_plugin.testing.TestHost`` serves the plugin's host calls with omnicore's test
    host in the same process (``toolchains.testhost.native``: the capabilities' own code)."""
    deps = dependencies(src)
    path = os.pathsep.join([str(src), str(locations.sdk_dir("python")),
                            *([str(deps)] if deps is not None else []),
                            os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return UnitTests([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
                     {**os.environ, "PYTHONPATH": path, "PYTHONDONTWRITEBYTECODE": "1"}, src)
