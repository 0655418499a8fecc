"""WAT fixtures compiled at test time; one engine per test module (sandbox, plugins...)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import wasmtime

from omnicore.capabilities.builtin import builtin_registry
from omnicore.sandbox import CapabilityRegistry, Limits, PluginModule, PluginRuntime, SandboxEngine

FIXTURES = Path(__file__).parent / "fixtures"


def compile_wat(name: str) -> bytes:
    """Compile ``fixtures/<name>.wat`` to wasm bytes."""
    return wasmtime.wat2wasm((FIXTURES / f"{name}.wat").read_text())


@pytest.fixture(scope="session")
def wat() -> Callable[[str], bytes]:
    """``wat("echo")`` -> the compiled fixture."""
    return compile_wat


@pytest.fixture(scope="module")
def engine() -> Iterator[SandboxEngine]:
    eng = SandboxEngine(epoch_tick_ms=5)
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def registry() -> CapabilityRegistry:
    return builtin_registry()


Make = Callable[..., PluginRuntime]


@pytest.fixture
def make(engine: SandboxEngine, registry: CapabilityRegistry) -> Iterator[Make]:
    """Build runtimes from fixture names or bytes; all closed at teardown."""
    made: list[PluginRuntime] = []

    def _make(source: str | bytes, *, grants: object = None, config: object = None,
              limits: Limits | None = None, name: str | None = None) -> PluginRuntime:
        wasm = compile_wat(source) if isinstance(source, str) else source
        label = name or (source if isinstance(source, str) else None)
        module = PluginModule.load(engine, wasm, label)
        rt = PluginRuntime(engine, module, registry, grants or {}, config or {},  # type: ignore[arg-type]
                           limits or Limits())
        made.append(rt)
        return rt

    yield _make
    for rt in made:
        rt.close()


@pytest.fixture
def echo(make: Make) -> PluginRuntime:
    return make("echo")
