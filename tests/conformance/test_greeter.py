"""One table of cases, run against every language's greeter: the SDKs cannot drift apart."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.capabilities.builtin import builtin_registry
from omnicore.errors import GuestError
from omnicore.sandbox import Limits, PluginModule, PluginRuntime, SandboxEngine
from omnicore.sandbox.component import ComponentModule, ComponentRuntime
from tests.compiler import BASELINE

TABLE = json.loads((Path(__file__).parent / "greeter_cases.json").read_text(encoding="utf-8"))
CASES = TABLE["cases"]
LANGS = ["rust", "go", "js", "c", "python", "zig", "as"]
LANGS += ["ruby"]  # issue 37
LANGS += ["kotlin"]  # issue 64: a Wasm GC module (on Winch, its Cranelift sibling runs it)
DEFAULT_CONFIG = {"greeting": "Hello"}
RuntimeFor = Callable[[dict[str, Any]], PluginRuntime | ComponentRuntime]


@pytest.fixture(scope="module")
def engine(module_cache: Path) -> Iterator[SandboxEngine]:
    eng = SandboxEngine(cache_dir=module_cache, baseline=BASELINE)
    yield eng
    eng.close()


@pytest.fixture(scope="module", params=LANGS)
def greeter(request: pytest.FixtureRequest, engine: SandboxEngine,
            example_wasm: Callable[[str, str], Path]) -> Iterator[RuntimeFor]:
    module = PluginModule.load(engine, example_wasm("greeter", request.param))
    assert module.name == f"greeter-{request.param}"
    assert "greet" in module.handlers
    runtimes: dict[str, PluginRuntime | ComponentRuntime] = {}

    def runtime_for(config: dict[str, Any]) -> PluginRuntime | ComponentRuntime:
        key = json.dumps(config, sort_keys=True)
        if key not in runtimes:
            if isinstance(module, ComponentModule):  # python: a component, same grants
                runtimes[key] = ComponentRuntime(engine, module, Limits(),
                                                 registry=builtin_registry(),
                                                 grants={"config": {}}, config=config)
            else:
                assert isinstance(module, PluginModule)
                runtimes[key] = PluginRuntime(engine, module, builtin_registry(),
                                              grants={"config": {}}, config=config,
                                              limits=Limits())
        return runtimes[key]

    yield runtime_for
    for rt in runtimes.values():
        rt.close()


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_greeter_case(greeter: RuntimeFor, case: dict[str, Any]) -> None:
    runtime = greeter(case.get("config", DEFAULT_CONFIG))
    data = case["input"].encode("utf-8")
    if "error" in case:
        with pytest.raises(GuestError) as info:
            runtime.call("greet", data)
        assert case["error"] in info.value.guest_message
        assert info.value.handler == "greet"
    else:
        out = runtime.call("greet", data)
        assert json.loads(out) == case["output"]


def test_greeter_logs_through_host(greeter: RuntimeFor) -> None:
    runtime = greeter(DEFAULT_CONFIG)
    runtime.call("greet", b'{"name": "Logger"}')
    assert any("Logger" in line.message for line in runtime.log.lines())
