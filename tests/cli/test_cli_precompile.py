"""`omnicore precompile APPDIR`: what a container image build runs so a new pod starts warm."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from omnicore.cli import main
from omnicore.sandbox import PluginModule, SandboxEngine
from tests.host_fixtures import echo_wasm, write


def _app(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    (app / "plugins").mkdir(parents=True)
    (app / "omnicore.yaml").write_text(f"name: t\nsandbox: {{cache_dir: {tmp_path / 'cache'}}}\n")
    return app


def test_every_plugin_lands_in_the_cache_the_host_then_loads_from(tmp_path: Path) -> None:
    app = _app(tmp_path)
    for name in ("one", "two"):
        write(app / "plugins", f"{name}.wasm", echo_wasm(name))
    got = CliRunner().invoke(main, ["precompile", str(app)])
    assert got.exit_code == 0, got.output
    assert "compiled 2 of 2" in got.output
    cached = sorted((tmp_path / "cache").glob("*.cwasm"))
    assert len(cached) == 2
    # The host's engine with the same settings finds both: nothing left to compile.
    with SandboxEngine(cache_dir=tmp_path / "cache") as engine:
        for name in ("one", "two"):
            module = PluginModule.load(engine, app / "plugins" / f"{name}.wasm")
            assert engine.is_cached(module.sha256)


def test_a_plugin_that_does_not_compile_fails_the_command(tmp_path: Path) -> None:
    app = _app(tmp_path)
    write(app / "plugins", "good.wasm", echo_wasm("good"))
    write(app / "plugins", "broken.wasm", b"\0asm\x01\0\0\0\x99garbage")
    got = CliRunner().invoke(main, ["precompile", str(app)])
    assert got.exit_code == 1
    assert "1 of 2 plugins did not compile" in got.output


def test_an_app_folder_without_config_is_named(tmp_path: Path) -> None:
    got = CliRunner().invoke(main, ["precompile", str(tmp_path)])
    assert got.exit_code == 1
    assert "omnicore.yaml not found" in got.output
