"""Property test: random modules from ``wasm-tools smith`` never crash or hang the host.

Every module must end as a loaded plugin (whose calls return bytes or a typed error) or as a
typed omnicore error. Two generators: unconstrained modules (almost never ABI-shaped), and
modules forced to the ABI's export shape with random bodies and a menu of imports, so the
runtime, host functions and limits are exercised on hostile code.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import wasmtime
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import ConfigError, PluginError
from omnicore.sandbox import Limits, PluginModule, PluginRuntime, SandboxEngine

WASM_TOOLS = shutil.which("wasm-tools") or str(Path(sys.executable).parent / "wasm-tools")

ABI_SHAPE = """
(module
  (memory (export "memory") 1)
  (func (export "omni_alloc") (param i32) (result i32) unreachable)
  (func (export "omni_free") (param i32 i32))
  (func (export "alpha") (param i32 i32) (result i64) unreachable)
  (func (export "beta") (param i32 i32) (result i64) unreachable)
)
"""

IMPORT_MENU = """
(module
  (import "omnicore:log" "write" (func (param i32 i32 i32)))
  (import "omnicore:log" "enabled" (func (param i32) (result i32)))
  (import "omnicore:config" "get" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func (param i32)))
)
"""

pytestmark = pytest.mark.skipif(not Path(WASM_TOOLS).exists(), reason="wasm-tools not installed")


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("smith")
    exports, imports = d / "exports.wasm", d / "imports.wasm"
    exports.write_bytes(wasmtime.wat2wasm(ABI_SHAPE))
    imports.write_bytes(wasmtime.wat2wasm(IMPORT_MENU))
    return exports, imports


@pytest.fixture(scope="module")
def smith_engine() -> SandboxEngine:
    eng = SandboxEngine(epoch_tick_ms=2)
    yield eng  # type: ignore[misc]
    eng.close()


def smith(seed: bytes, *extra: str) -> bytes | None:
    proc = subprocess.run([WASM_TOOLS, "smith", *extra], input=seed, capture_output=True,
                          timeout=30, check=False)
    if proc.returncode == 2:  # the seed could not produce a module
        return None
    assert proc.returncode == 0, proc.stderr.decode()
    return proc.stdout


def shaped(exports: Path, imports: Path) -> tuple[str, ...]:
    """smith flags for ABI-shaped modules (wasmtime 50 lacks compact imports; SIMD is off)."""
    return ("--exports", str(exports), "--available-imports", str(imports),
            "--compact-imports-enabled", "false", "--simd-enabled", "false")


def exercise(engine: SandboxEngine, wasm: bytes, inputs: list[bytes]) -> str:
    """Load and call; return the outcome. Anything but a typed error fails the test."""
    registry = builtin_registry()
    try:
        module = PluginModule.load(engine, wasm, "smith")
        rt = PluginRuntime(engine, module, registry, grants=["config"], config={"k": "v"},
                           limits=Limits(timeout_ms=50, max_memory_bytes=8 * 2**20,
                                         max_output_bytes=2**20, pool_size=1))
    except (PluginError, ConfigError) as exc:
        return type(exc).__name__
    outcomes = []
    try:
        for handler in rt.handlers:
            for data in inputs:
                try:
                    out = rt.call(handler, data)
                    assert isinstance(out, bytes)
                    outcomes.append("ok")
                except PluginError as exc:
                    assert exc.plugin == "smith"
                    outcomes.append(type(exc).__name__)
    finally:
        rt.close()
    return ",".join(outcomes) or "loaded"


SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(seed=st.binary(min_size=16, max_size=2048))
def test_unconstrained_modules(smith_engine: SandboxEngine, seed: bytes) -> None:
    wasm = smith(seed)
    if wasm is not None:
        exercise(smith_engine, wasm, [b""])


@SETTINGS
@given(seed=st.binary(min_size=64, max_size=4096),
       inputs=st.lists(st.binary(max_size=300), min_size=1, max_size=3))
def test_abi_shaped_modules(smith_engine: SandboxEngine, shapes: tuple[Path, Path],
                            seed: bytes, inputs: list[bytes]) -> None:
    exports, imports = shapes
    wasm = smith(seed, *shaped(exports, imports))
    if wasm is not None:
        exercise(smith_engine, wasm, inputs)


def test_host_serves_after_smith_storm(smith_engine: SandboxEngine,
                                       shapes: tuple[Path, Path]) -> None:
    exports, imports = shapes
    seen = set()
    for i in range(30):
        seed = bytes((i * 37 + k * 11) % 256 for k in range(600 + i * 50))
        wasm = smith(seed, *shaped(exports, imports))
        if wasm is not None:
            seen.add(exercise(smith_engine, wasm, [b"x" * i]))
    assert seen  # at least some modules were generated and classified
    echo = PluginRuntime(smith_engine, PluginModule.load(
        smith_engine, wasmtime.wat2wasm((Path(__file__).parents[1] / "fixtures/echo.wat")
                                        .read_text())), builtin_registry())
    assert echo.call("echo", b"still serving") == b"still serving"
    echo.close()
