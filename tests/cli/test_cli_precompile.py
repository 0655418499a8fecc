"""`omnicore precompile APPDIR [--from CACHE]`: what a container image build runs so a new pod
starts warm."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from omnicore.cli import main
from omnicore.sandbox import PluginModule, SandboxEngine, modcache
from omnicore.sandbox.modkey import ModuleKey
from tests.component_fixtures import wat_plugin
from tests.host_fixtures import echo_wasm, write


@pytest.fixture(autouse=True)
def _cranelift(monkeypatch: pytest.MonkeyPatch) -> None:
    """What an image build precompiles is what its hosts load: the default compiler's code,
    whatever the tests' own (tests/compiler.py)."""
    monkeypatch.setenv("OMNICORE_SANDBOX__COMPILER", "cranelift")


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


# -- --from: another module cache's entries, taken checked ------------------------------------

def _compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The digests compiled from here on (modules and components alike go through
    modcache.compiled; only a miss calls its compile)."""
    made: list[str] = []
    real = modcache.compiled

    def counting(path: Any, origin: Any, engine: Any, kind: Any, compile: Any,
                 key: Any, baked: Any = None) -> Any:
        def counted() -> Any:
            made.append(origin.wasm_sha256)
            return compile()
        return real(path, origin, engine, kind, counted, key, baked)

    monkeypatch.setattr(modcache, "compiled", counting)
    return made


def _machines(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """A build machine's app with a core module and a component precompiled into its cache
    (tmp_path/build/cache), and an image's app holding the same plugins with an empty cache;
    the plugins' digests by name."""
    plugins = {"echo.wasm": echo_wasm("echo"),
               "bytes.wasm": wat_plugin("bytes-plugin", {"name": "bytes",
                                                         "handlers": ["echo", "fail"]}
                                        ).read_bytes()}
    build, image = _app(tmp_path / "build"), _app(tmp_path / "image")
    for app in (build, image):
        for name, wasm in plugins.items():
            write(app / "plugins", name, wasm)
    got = CliRunner().invoke(main, ["precompile", str(build)])
    assert got.exit_code == 0, got.output
    return build, image, {n: hashlib.sha256(w).hexdigest() for n, w in plugins.items()}


def test_what_another_cache_compiled_is_taken_checked_instead_of_compiled(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _build, image, shas = _machines(tmp_path)
    source = tmp_path / "build" / "cache"
    # An entry of other engine settings (fuel on) beside them: not this host's, never taken.
    with SandboxEngine(cache_dir=source, fuel=True) as fueled:
        PluginModule.load(fueled, image / "plugins" / "echo.wasm")
    made = _compiles(monkeypatch)
    got = CliRunner().invoke(main, ["precompile", str(image), "--from", str(source)])
    assert got.exit_code == 0, got.output
    assert "compiled 2 of 2" in got.output and "(2 of them taken compiled from" in got.output
    assert made == []
    taken = sorted(p.name for p in (tmp_path / "image" / "cache").iterdir())
    assert len(taken) == 4, taken  # two entries and their MACs: not the fueled one
    assert all(name.split("-")[0] in shas.values() for name in taken)
    for name in taken:
        assert (source / name).read_bytes() == (tmp_path / "image" / "cache" / name).read_bytes()
    # The host then loads both from the cache it was given, and they answer.
    made.clear()
    with SandboxEngine(cache_dir=tmp_path / "image" / "cache") as engine:
        for name in shas:
            PluginModule.load(engine, image / "plugins" / name)
    assert made == []


def test_an_image_build_takes_a_caches_entries_by_their_key_and_seals_them_with_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`precompile --from DIR --from-key FILE` (the image build): DIR's entries are checked
    with FILE's key and stored with the app's (the image's own), so the image never holds
    the key DIR was made with; without --from-key they are another key's and compiled."""
    _build, image, shas = _machines(tmp_path)  # made with the tests' key (OMNICORE_MODULE_KEY)
    source = tmp_path / "build" / "cache"
    from_key = tmp_path / "source.key"
    from_key.write_text(os.environ["OMNICORE_MODULE_KEY"])
    own = ModuleKey.new()
    monkeypatch.setenv("OMNICORE_MODULE_KEY", own.encoded())
    made = _compiles(monkeypatch)
    got = CliRunner().invoke(main, ["precompile", str(image), "--from", str(source),
                                    "--from-key", str(from_key)])
    assert got.exit_code == 0, got.output
    assert "(2 of them taken compiled from" in got.output and made == []
    with SandboxEngine(cache_dir=tmp_path / "image" / "cache", module_key=own) as engine:
        for name in shas:
            PluginModule.load(engine, image / "plugins" / name)
    assert made == []  # sealed with the image's key: its hosts load them
    for entry in (tmp_path / "image" / "cache").glob("*.cwasm"):
        entry.unlink()
    got = CliRunner().invoke(main, ["precompile", str(image), "--from", str(source)])
    assert got.exit_code == 0, got.output
    assert sorted(made) == sorted(shas.values())  # another key's: compiled, not taken


def test_a_damaged_entry_in_the_other_cache_is_compiled_instead(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _build, image, shas = _machines(tmp_path)
    source = tmp_path / "build" / "cache"
    [entry] = source.glob(f"{shas['echo.wasm']}-*.cwasm")
    body = bytearray(entry.read_bytes())
    body[len(body) // 2] ^= 0xFF
    entry.write_bytes(bytes(body))
    made = _compiles(monkeypatch)
    got = CliRunner().invoke(main, ["precompile", str(image), "--from", str(source)])
    assert got.exit_code == 0, got.output
    assert "(1 of them taken compiled from" in got.output
    assert made == [shas["echo.wasm"]]
    [ours] = (tmp_path / "image" / "cache").glob(f"{shas['echo.wasm']}-*.cwasm")
    assert ours.read_bytes() != bytes(body)


@pytest.mark.parametrize("how", ["a writable folder", "a writable entry", "a linked entry"])
def test_a_cache_others_could_write_is_refused_and_nothing_taken(tmp_path: Path,
                                                                 how: str) -> None:
    _build, image, shas = _machines(tmp_path)
    source = tmp_path / "build" / "cache"
    [entry] = source.glob(f"{shas['echo.wasm']}-*.cwasm")
    if how == "a writable folder":
        source.chmod(0o777)
    elif how == "a writable entry":
        entry.chmod(0o666)
    else:
        elsewhere = tmp_path / "elsewhere.cwasm"
        entry.rename(elsewhere)
        entry.symlink_to(elsewhere)
    got = CliRunner().invoke(main, ["precompile", str(image), "--from", str(source)])
    assert got.exit_code == 1, got.output
    assert f"cannot take compiled modules from {source}" in got.output
    assert ("writable by other users" if how != "a linked entry" else "symbolic links") \
        in got.output
    assert not list((tmp_path / "image" / "cache").glob(f"{shas['echo.wasm']}-*"))
