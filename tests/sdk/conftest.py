"""Fixtures every SDK test module shares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from spec_host import HostedProbe, SpecState, probe_runtime

from omnicore.sandbox import SandboxEngine


@pytest.fixture(scope="session")
def module_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Compiling a 1-3 MB Go or JS module takes seconds; the on-disk cache makes every later
    # load of the same module cost milliseconds.
    return tmp_path_factory.mktemp("module-cache")


@pytest.fixture(scope="module")
def engine(module_cache: Path) -> Iterator[SandboxEngine]:
    eng = SandboxEngine(cache_dir=module_cache)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def out_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this test module's plugins are built."""
    return tmp_path_factory.mktemp(request.module.__name__.removeprefix("test_") + "-plugins")


@pytest.fixture(scope="module")
def probe(engine: SandboxEngine, wasm: dict[str, Path]) -> Iterator[tuple[HostedProbe,
                                                                           SpecState]]:
    """The module's probe plugin (``wasm["probe"]``) on the real host with the spec host's
    stand-ins (:mod:`spec_host`)."""
    state = SpecState()
    rt = probe_runtime(engine, wasm["probe"], state)
    yield rt, state
    rt.close()
