"""What a build reuses: the output folder's stamp (two builds of one plugin into one folder at
once, from test workers or a watcher beside `omnicore build`: one works, the others wait and
find it up to date) and the content-addressed build cache (the same sources, build code,
compilers and name built into any folder: copied, no compiler runs)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import omnicore.toolchains as toolchains
from omnicore.cli.build import build_command
from omnicore.toolchains import _build, scaffold
from omnicore.toolchains import c as c_language
from omnicore.toolchains.c import check


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A build cache of this test's own (the checkout's build/ holds every other run's)."""
    if check() is not None:  # under CI the toolchain is installed and this never skips
        pytest.skip(f"C toolchain: {check()}")
    root = tmp_path / "cache"
    monkeypatch.setattr(toolchains.locations, "cache_dir", lambda: root)
    return root / "built"


def _fresh(tmp_path: Path, name: str = "hello") -> Path:
    """A C plugin no earlier run built (a comment of its own)."""
    src = tmp_path / name
    scaffold(src, name, "c")
    main = next(src.glob("*.c"))
    main.write_text(f"/* {uuid.uuid4()} */\n" + main.read_text())
    return src


def _no_compiler(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(src: Path, work: Path) -> bytes:
        raise AssertionError("the compiler ran for a build the cache holds")

    monkeypatch.setattr(c_language, "compile", refuse)


def test_concurrent_builds_of_one_plugin_compile_once(tmp_path: Path) -> None:
    if check() is not None:  # under CI the toolchain is installed and this never skips
        pytest.skip(f"C toolchain: {check()}")
    src = tmp_path / "hello"
    scaffold(src, "hello", "c")
    out = tmp_path / "out"
    results: list[tuple[Path, str]] = []
    errors: list[BaseException] = []

    def build() -> None:
        try:
            results.append(_build(src, out, name=None, force=False))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors
    # The first built it (or copied it from the cache); the others found it done.
    assert sorted(how == "up to date" for _, how in results) == [False, True, True]
    assert {path for path, _ in results} == {out / "hello.wasm"}
    assert (out / "hello.wasm").read_bytes()[:4] == b"\0asm"
    assert not list(out.glob("*.tmp"))


def test_concurrent_builds_of_one_source_into_two_folders_compile_once(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two projects scaffolded alike (a guide's and a test's), built at once by two workers.
    src = _fresh(tmp_path)
    compiling, release = threading.Event(), threading.Event()
    compiled: list[Path] = []
    real = c_language.compile

    def held(source: Path, work: Path) -> bytes:
        compiled.append(source)
        compiling.set()
        assert release.wait(60), "the test never released the compiler"
        return real(source, work)

    monkeypatch.setattr(c_language, "compile", held)
    results: dict[str, str] = {}

    def build(folder: str) -> None:
        results[folder] = _build(src, tmp_path / folder, name=None, force=False)[1]

    # The second asks for the build's lock while the first compiles (it then blocks on it);
    # only then is the first let go, so the second cannot simply find the cache filled.
    asking = threading.Event()
    real_locked = toolchains.locations.locked

    def locked(path: Path) -> Any:
        if path.parent == cache and threading.current_thread() is second:
            asking.set()
        return real_locked(path)

    monkeypatch.setattr(toolchains.locations, "locked", locked)
    first = threading.Thread(target=build, args=("one",))
    second = threading.Thread(target=build, args=("two",))
    first.start()
    assert compiling.wait(60)
    second.start()
    assert asking.wait(60), "the second build never asked for the cache entry's lock"
    release.set()
    first.join(600)
    second.join(600)
    assert results == {"one": "built", "two": "cached"} and compiled == [src]
    assert (tmp_path / "one" / "hello.wasm").read_bytes() == \
        (tmp_path / "two" / "hello.wasm").read_bytes()


def test_a_build_into_another_folder_is_copied_from_the_cache(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _fresh(tmp_path)
    first, how = _build(src, tmp_path / "one", name=None, force=False)
    assert how == "built" and len(list(cache.glob("*.wasm"))) == 1
    _no_compiler(monkeypatch)
    second, how = _build(src, tmp_path / "two", name=None, force=False)
    assert how == "cached" and second.read_bytes() == first.read_bytes()
    # Built again there: the folder's own stamp says so first.
    assert _build(src, tmp_path / "two", name=None, force=False)[1] == "up to date"
    # --force never takes the cache's copy.
    with pytest.raises(AssertionError, match="the compiler ran"):
        _build(src, tmp_path / "three", name=None, force=True)


def test_what_shapes_a_build_is_in_the_key(tmp_path: Path, cache: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    src = _fresh(tmp_path)
    assert _build(src, tmp_path / "one", name=None, force=False)[1] == "built"
    # Another name (the manifest's default name when omnicore.toml gives none).
    assert _build(src, tmp_path / "two", name="other", force=False)[1] == "built"
    # A source changed.
    main = next(src.glob("*.c"))
    main.write_text(main.read_text() + "\n/* changed */\n")
    assert _build(src, tmp_path / "three", name=None, force=False)[1] == "built"
    # The compiler replaced in place (another size or time): another key.
    compiler = tmp_path / "clang"
    compiler.write_text("#!/bin/sh\n")
    real = c_language.programs
    monkeypatch.setattr(c_language, "programs", lambda: [*real(), str(compiler)])
    toolchains._toolchain_digest.cache_clear()
    try:
        assert _build(src, tmp_path / "four", name=None, force=False)[1] == "built"
        compiler.write_text("#!/bin/sh\n# another version\n")
        toolchains._toolchain_digest.cache_clear()
        assert _build(src, tmp_path / "five", name=None, force=False)[1] == "built"
    finally:
        toolchains._toolchain_digest.cache_clear()


def test_a_failed_build_is_not_kept_and_the_cache_is_trimmed(
        tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = _fresh(tmp_path)
    main = next(src.glob("*.c"))
    good = main.read_text()
    main.write_text(good + "\nthis is not C;\n")
    with pytest.raises(toolchains.BuildError):
        _build(src, tmp_path / "out", name=None, force=False)
    assert not list(cache.glob("*.wasm")) and not list(cache.glob(".*.tmp"))
    monkeypatch.setattr(toolchains, "BUILT_KEEP", 2)
    for n in range(3):
        main.write_text(good + f"\n/* {n} */\n")
        _build(src, tmp_path / "out", name=None, force=False)
    assert len(list(cache.glob("*.wasm"))) == 2
    assert not list(cache.glob(".*.tmp"))


def test_omnicore_build_says_a_build_came_from_the_cache(tmp_path: Path, cache: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    src = _fresh(tmp_path)
    runner = CliRunner()
    said: list[Any] = []
    for out in ("one", "two"):
        result = runner.invoke(build_command, [str(src), "--out", str(tmp_path / out)])
        assert result.exit_code == 0, result.output
        said.append(result.output)
    assert "from the build cache" not in said[0] and "ok c" in said[0]
    assert "from the build cache" in said[1]
