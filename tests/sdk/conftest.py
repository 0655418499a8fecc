"""Fixtures every SDK test module shares."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicore.sandbox import SandboxEngine
from tests.compiler import BASELINE
from tests.sdk.hosting import HostedProbe, Upstream, probe_grants


@pytest.fixture(scope="module")
def engine(module_cache: Path) -> Iterator[SandboxEngine]:
    eng = SandboxEngine(cache_dir=module_cache, baseline=BASELINE)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def out_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where this test module's plugins are built."""
    module = request.module.__name__.rpartition(".")[2]   # tests.sdk.test_go -> test_go
    return tmp_path_factory.mktemp(module.removeprefix("test_") + "-plugins")


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    """A loopback HTTP server the probes reach through omnicore:http."""
    yield from Upstream().serve()


@pytest.fixture(scope="module")
def probe(engine: SandboxEngine, wasm: dict[str, Path],
          upstream: Upstream) -> Iterator[HostedProbe]:
    """The module's probe plugin (``wasm["probe"]``) on the real host, every capability
    granted (:func:`hosting.probe_grants`), events publishing ``order.*``."""
    with HostedProbe(engine, wasm["probe"], upstream=upstream,
                     grants=probe_grants(upstream, publish=("order.*",)),
                     config={"db": {"host": "h", "port": 5432}}) as rt:
        yield rt


@pytest.fixture(scope="module")
def fs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """in/ (granted read-only as /in, holding a.txt), out/ (read-write as /out) and a file
    beside them that no grant covers."""
    root = tmp_path_factory.mktemp("fs")
    (root / "in").mkdir()
    (root / "out").mkdir()
    (root / "in" / "a.txt").write_text("granted")
    (root / "secret.txt").write_text("not granted")
    return root
