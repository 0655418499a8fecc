"""The host with plugins built by the real toolchains (Go reactor with WASI, Rust).

Slow: builds the greeter examples once (cached under build/test-plugins, like the
conformance suite).
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from omnicore.plugins.host import PluginHost
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "build" / "test-plugins"

pytestmark = pytest.mark.slow


def built(lang: str) -> Path:
    import importlib

    from omnicore.toolchains import build

    missing = importlib.import_module(f"omnicore.toolchains.{lang}").check()
    if missing:  # a machine without that toolchain (under CI a skip fails: conftest.py)
        pytest.skip(f"cannot build greeter/{lang}: {missing}")
    # Any other build error is a regression and fails the test.
    return build(ROOT / "plugins" / "greeter" / lang, OUT)


@pytest.mark.parametrize("lang", ["go", "rust"])
def test_sidecar_change_relinks_a_real_plugin_under_load(tmp_path: Path, lang: str) -> None:
    wasm = built(lang)
    plugin = tmp_path / wasm.name
    shutil.copy(wasm, plugin)
    sidecar = plugin.with_suffix(".toml")
    sidecar.write_text('grants = ["config"]\n[config]\ngreeting = "Hello"\n')
    with PluginHost() as host:
        host.watch_folder(tmp_path)
        name = host.get(plugin.stem).name
        assert host.call_json(name, "greet", {"name": "Ada"}) == {"message": "Hello, Ada!"}
        failures: list[BaseException] = []
        messages: list[str] = []
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                try:
                    messages.append(host.call_json(name, "greet", {"name": "Ada"})["message"])
                except BaseException as exc:
                    failures.append(exc)

        worker = threading.Thread(target=loop)
        worker.start()
        try:
            # The load is on before the sidecar changes.
            eventually(lambda: messages, "a first call", every=0.001)
            sidecar.write_text('grants = ["config"]\n[config]\ngreeting = "Hej"\n')
            # A Go reload recompiles 3 MB: seconds, more on a loaded 2-core machine.
            eventually(lambda: messages[-1] == "Hej, Ada!", "the reloaded greeting",
                       every=0.01)
        finally:
            stop.set()
            worker.join()
        assert failures == []
        assert messages[0] == "Hello, Ada!" and messages[-1] == "Hej, Ada!"
        assert host.get(name).state == "loaded"
