"""A JS plugin's npm dependencies follow its package.json (toolchains/js/npm.py): one added
after the first build is installed by the next build (it was never installed, and esbuild said
`Could not resolve "..."`), and a package the source imports but package.json does not name is
called that, not only esbuild's word. Real npm, with ``file:`` packages: no network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from omnicore.errors import BuildError
from omnicore.sandbox import SandboxEngine
from omnicore.toolchains import build
from omnicore.toolchains.js import npm
from tests.sdk.hosting import runtime


def _package(folder: Path, name: str, body: str) -> None:
    folder.mkdir(parents=True)
    (folder / "package.json").write_text(json.dumps(
        {"name": name, "version": "1.0.0", "type": "module", "main": "index.js"}))
    (folder / "index.js").write_text(body)


def _project(root: Path, deps: dict[str, str], source: str) -> Path:
    proj = root / "proj"
    proj.mkdir(exist_ok=True)
    (proj / "package.json").write_text(json.dumps(
        {"name": "proj", "private": True, "type": "module", "main": "plugin.js",
         "dependencies": deps}, indent=2))
    (proj / "plugin.js").write_text(source)
    return proj


def test_a_dependency_added_after_the_first_build_is_installed(
        tmp_path: Path, engine: SandboxEngine) -> None:
    proj = tmp_path / "proj"
    _package(proj / "deps" / "shout", "shout", "export const shout = (s) => s.toUpperCase();\n")
    _package(proj / "deps" / "whisper", "whisper",
             "export const whisper = (s) => s.toLowerCase();\n")
    _project(tmp_path, {"shout": "file:./deps/shout"},
             'import { shout } from "shout";\nexport function loud(s) { return shout(s); }\n')
    # force: a build of these same sources by an earlier run is in the build cache, and a
    # cached build installs nothing (the second full run failed so).
    first = build(proj, tmp_path / "out", force=True)
    assert (proj / "package-lock.json").is_file()  # the first install wrote it
    with runtime(engine, first) as rt:
        assert rt.call("loud", b"hi") == b"HI"

    # Later: a second dependency, added to package.json by hand (the lock file not touched).
    _project(tmp_path, {"shout": "file:./deps/shout", "whisper": "file:./deps/whisper"},
             'import { shout } from "shout";\nimport { whisper } from "whisper";\n'
             "export function loud(s) { return shout(s); }\n"
             "export function quiet(s) { return whisper(s); }\n")
    assert not npm._deps_current(proj)
    second = build(proj, tmp_path / "out2", force=True)
    with runtime(engine, second) as rt:
        assert rt.call("quiet", b"HI") == b"hi"
    assert "whisper" in json.loads((proj / "package-lock.json").read_text())["packages"][""][
        "dependencies"]
    assert npm._deps_current(proj)

    # The lock file changed by another hand (a `git pull`) is installed again too.
    lock = proj / "package-lock.json"
    lock.write_text(lock.read_text() + "\n")
    assert not npm._deps_current(proj)
    build(proj, tmp_path / "out3", force=True)
    assert npm._deps_current(proj)


def test_a_project_installed_by_hand_is_current_until_package_json_names_more(
        tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    _package(proj / "deps" / "shout", "shout", "export const shout = (s) => s;\n")
    _project(tmp_path, {"shout": "file:./deps/shout"}, "export const f = () => 1;\n")
    npm.install_deps(proj)
    (proj / "node_modules" / npm.STAMP).unlink()  # as `npm ci` by hand leaves it
    assert npm._deps_current(proj)
    _project(tmp_path, {"shout": "file:./deps/shout", "other": "file:./deps/other"},
             "export const f = () => 1;\n")
    assert not npm._deps_current(proj)


def test_an_import_package_json_does_not_name_is_called_that(tmp_path: Path) -> None:
    proj = tmp_path / "proj"
    _package(proj / "deps" / "shout", "shout", "export const shout = (s) => s;\n")
    _project(tmp_path, {"shout": "file:./deps/shout"},
             'import { shout } from "shout";\nimport pad from "left-pad";\n'
             "export function f(s) { return pad(shout(s)); }\n")
    with pytest.raises(BuildError, match=r'(?s)Could not resolve "left-pad".*left-pad is not '
                                         r"among package.json's dependencies: add it "
                                         r"\(`npm install left-pad` in "):
        build(proj, tmp_path / "out")
