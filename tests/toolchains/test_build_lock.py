"""Two builds of one plugin into one folder at once (test workers, a watcher beside `omnicore
build`): one compiles, the other waits for it and finds the output up to date."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from omnicore.toolchains import _build, scaffold
from omnicore.toolchains.c import check


def test_concurrent_builds_of_one_plugin_compile_once(tmp_path: Path) -> None:
    if check() is not None:  # under CI the toolchain is installed and this never skips
        pytest.skip(f"C toolchain: {check()}")
    src = tmp_path / "hello"
    scaffold(src, "hello", "c")
    out = tmp_path / "out"
    results: list[tuple[Path, bool]] = []
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
    assert sorted(up_to_date for _, up_to_date in results) == [False, True, True]
    assert {path for path, _ in results} == {out / "hello.wasm"}
    assert (out / "hello.wasm").read_bytes()[:4] == b"\0asm"
    assert not list(out.glob("*.tmp"))
