"""Components as plugins of the host: loaded from the folder beside core modules, called
with ``app.plugins.call_json`` and ``omnicore call``, shown by ``omnicore inspect``, under
the host's breaker and limits (real components built at test time)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicore.app import OmniApp
from omnicore.errors import (
    DeadlineExceeded,
    HandlerNotFound,
    InvalidInput,
    MemoryLimitExceeded,
    Trap,
)
from omnicore.plugins.host import PluginHost
from tests.compiler import ENVIRON
from tests.component_fixtures import js_component, wat_component
from tests.host_fixtures import echo_wasm, write


@pytest.fixture
def app(tmp_path: Path) -> Iterator[OmniApp]:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    shutil.copy(js_component("types"), plugins / "types.wasm")
    shutil.copy(wat_component("limits"), plugins / "limits.wasm")
    shutil.copy(wat_component("foreign"), plugins / "foreign.wasm")
    write(plugins, "echo.wasm", echo_wasm())
    app = OmniApp("components", overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(plugins),
        "plugins": {"limits": {"limits": {"timeout_ms": 300}}}}, environ=ENVIRON,
        entry_points=False)
    app.start()
    yield app
    app.stop()


def test_components_load_from_the_folder_beside_core_modules(app: OmniApp) -> None:
    assert app.plugins.call("echo", "echo", b"hi") == b"hi"
    assert app.plugins.get("types").state == "loaded"
    assert app.plugins.call_json("types", "greet", ["Ada"]) == "Hello, Ada!"
    assert app.plugins.call_json("types", "test:types/shapes#centroid",
                                 [[{"x": 2, "y-coord": 4}]]) == {"x": 2, "y-coord": 4}
    assert app.plugins.call_json("types", "safe-div", [1, 0]) == {"err": "division by zero"}
    assert app.plugins.call_json("limits", "add64", [2**63, 2**63 - 1]) == 2**64 - 1
    assert app.plugins.call_json("types", "nothing", []) is None
    assert "greet" in app.plugins.get("types").handlers


def test_an_import_nothing_supplies_fails_the_load_naming_it(app: OmniApp) -> None:
    info = app.plugins.get("foreign")
    assert info.state == "failed"
    assert "acme:db/query" in (info.last_error or "")


def test_every_failure_is_typed_and_the_next_call_is_served(app: OmniApp) -> None:
    plugins = app.plugins
    with pytest.raises(Trap, match="boom from js"):
        plugins.call_json("types", "boom", [])
    assert plugins.call_json("types", "greet", ["after a trap"]) == "Hello, after a trap!"
    with pytest.raises(DeadlineExceeded, match="deadline of 300 ms"):
        plugins.call_json("limits", "spin", [])
    assert plugins.call_json("limits", "small", [1]) == 2
    with pytest.raises(MemoryLimitExceeded, match=r"limits\.max_memory_bytes"):
        plugins.call_json("limits", "bomb", [])
    assert plugins.call_json("limits", "small", [2]) == 3
    with pytest.raises(InvalidInput, match=r"argument pts\[0\]\.x: expected an integer"):
        plugins.call_json("types", "test:types/shapes#centroid", [[{"x": 1.5, "y-coord": 0}]])
    with pytest.raises(HandlerNotFound):
        plugins.call_json("types", "centroid", [[]])
    assert plugins.call_json("types", "greet", ["still here"]) == "Hello, still here!"


def test_bad_arguments_never_open_the_breaker(app: OmniApp) -> None:
    # The caller's mistake, like InputTooLarge: ten in a row leave the plugin serving.
    for _ in range(10):
        with pytest.raises(InvalidInput):
            app.plugins.call_json("limits", "small", [256])
    assert app.plugins.get("limits").breaker == "closed"
    assert app.plugins.call_json("limits", "small", [254]) == 255


def test_a_component_file_can_be_loaded_by_path_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "c.wasm"
    shutil.copy(wat_component("limits"), path)
    with PluginHost() as host:
        info = host.load(path)
        assert info.state == "loaded"
        assert host.call_json("c", "small", [7]) == 8
        shutil.copy(js_component("types"), path)  # another component under the same name
        host.reload_file("c", path)
        assert host.call_json("c", "greet", ["v2"]) == "Hello, v2!"


def _cli(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "omnicore.cli", *map(str, args)], cwd=cwd,
                          env={**os.environ, "OMNICORE_CACHE_DIR": str(cwd / "cache")},
                          capture_output=True, text=True, timeout=300)


def test_omnicore_call_prints_the_json_result_and_nothing_else(tmp_path: Path) -> None:
    types = tmp_path / "types.wasm"
    shutil.copy(js_component("types"), types)
    done = _cli("call", types, "greet", "--input", '["Ada"]', cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == "Hello, Ada!"
    # Compiled once into the user's cache: the next call of the unchanged file loads it.
    assert list((tmp_path / "cache").glob("*.component.cwasm"))
    wasi = tmp_path / "wasi.wasm"
    shutil.copy(js_component("wasi"), wasi)
    done = _cli("call", wasi, "shout", "--input", '["hey"]', cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "3"  # the guest's stdout went to the plugin log
    assert "err: hey" in done.stderr  # stderr lines are warnings: shown on stderr
    bad = _cli("call", types, "add", "--input", "[300, 1]", cwd=tmp_path)
    assert bad.returncode != 0
    assert "argument a: expected a u8 (0..255), got 300" in bad.stderr
    assert bad.stdout == ""


def test_omnicore_inspect_shows_abi_component_and_the_world(tmp_path: Path) -> None:
    types = tmp_path / "types.wasm"
    shutil.copy(js_component("types"), types)
    done = _cli("inspect", types, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "abi         component" in done.stdout
    assert "  export greet: func(name: string) -> string;" in done.stdout
    # Each export's call path, as --json gives it (a componentize-qjs program is nested).
    assert "  greet (func func(name: string) -> string)  [value-api]" in done.stdout
    assert "  export test:types/shapes {" in done.stdout
    assert "  import wasi:cli/stdout@0.2.12;" in done.stdout
    assert "would load  yes" in done.stdout
    report = json.loads(_cli("inspect", types, "--json", cwd=tmp_path).stdout)
    assert report["abi"] == "component"
    assert report["imports"]["wasi:cli/stdout@0.2.12"] == ["supplied"]
    foreign = tmp_path / "foreign.wasm"
    shutil.copy(wat_component("foreign"), foreign)
    done = _cli("inspect", foreign, cwd=tmp_path)
    assert done.returncode != 0
    assert "import acme:db/query;" in done.stdout
    assert "would load  no: InvalidModule" in done.stdout
