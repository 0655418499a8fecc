"""The runtime table (``omnicore.plugins.runtimes``): the host links every plugin through the
entry for its module's ABI, and only through it."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import wasmtime

from omnicore.errors import ConfigError, UnsupportedAbiVersion
from omnicore.plugins import runtimes
from omnicore.plugins.host import PluginHost
from omnicore.plugins.runtimes import RUNTIMES, Link, Runtime, RuntimeKind, kind_of
from omnicore.plugins.sidecar import Sidecar
from omnicore.sandbox import PluginModule, SandboxEngine
from tests.host_fixtures import config_wasm, echo_wasm, write

KERNEL_WAT = Path(__file__).parents[1] / "extism" / "plugins" / "kernel.wat"


def extism_wasm() -> bytes:
    """A hand-written Extism plugin (tests/extism/plugins/kernel.wat)."""
    return bytes(wasmtime.wat2wasm(KERNEL_WAT.read_text()))


@pytest.fixture
def host() -> Iterator[PluginHost]:
    with PluginHost() as h:
        yield h


def recording(kind: RuntimeKind, seen: list[Link]) -> RuntimeKind:
    """``kind`` with every link it makes recorded in ``seen``."""
    def link(request: Link) -> Runtime:
        seen.append(request)
        return kind.link(request)

    return dataclasses.replace(kind, link=link)


def test_every_abi_a_module_can_have_has_an_entry(engine: SandboxEngine) -> None:
    native = PluginModule.load(engine, echo_wasm())
    extism = PluginModule.load(engine, extism_wasm(), name="kernel")
    assert (native.abi, extism.abi) == (1, "extism")
    assert kind_of(native) is RUNTIMES[1] and kind_of(extism) is RUNTIMES["extism"]


def test_the_host_links_each_plugin_through_its_abis_entry(
        host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    native_links: list[Link] = []
    extism_links: list[Link] = []
    monkeypatch.setitem(RUNTIMES, 1, recording(RUNTIMES[1], native_links))
    monkeypatch.setitem(RUNTIMES, "extism", recording(RUNTIMES["extism"], extism_links))
    host.load(echo_wasm(), config={"k": "v"})
    wasm = write(tmp_path, "kernel.wasm", extism_wasm())
    (tmp_path / "kernel.json").write_text(json.dumps({"config": {"greeting": "Hi"}}))
    host.load(wasm)
    assert [link.module.name for link in native_links] == ["echo"]
    assert native_links[0].settings.config == {"k": "v"} and native_links[0].abi_manifest is None
    assert [link.module.name for link in extism_links] == ["kernel"]
    # The Extism kind's layer read NAME.json: the runtime got its config and its manifest.
    assert extism_links[0].settings.config == {"greeting": "Hi"}
    assert extism_links[0].abi_manifest is not None
    assert host.call("echo", "echo", b"x") == b"x"
    assert host.call("kernel", "config", b"greeting") == b"Hi"
    # A re-link (a grant) goes through the table too, with the same ABI manifest.
    host.grant("kernel", "kv")
    assert len(extism_links) == 2 and extism_links[1].abi_manifest == extism_links[0].abi_manifest


def test_a_kinds_layer_shapes_the_settings_of_its_plugins(
        host: PluginHost, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What a kind with a manifest of its own does (Extism's NAME.json): fold it into the
    # operator's sidecar layer. Here a stand-in manifest sets one config value.
    def layer(module: PluginModule, path: Path | None, sidecar: Sidecar
              ) -> tuple[Sidecar, object | None]:
        sidecar, _ = runtimes.no_abi_manifest(module, path, sidecar)
        return dataclasses.replace(sidecar, config={"from": "layer", **sidecar.config}), "m"

    monkeypatch.setitem(RUNTIMES, 1, dataclasses.replace(RUNTIMES[1], layer=layer))
    path = write(tmp_path, "conf.wasm", config_wasm())
    (tmp_path / "conf.toml").write_text('grants = ["config"]\n')
    host.load(path)
    assert host.call("conf", "get", b"from") == b"layer"
    # The sidecar still ranks above the kind's manifest, the arguments above both.
    host.unload("conf")
    (tmp_path / "conf.toml").write_text('grants = ["config"]\n[config]\nfrom = "sidecar"\n')
    host.load(path)
    assert host.call("conf", "get", b"from") == b"sidecar"
    host.unload("conf")
    host.load(path, config={"from": "argument"})
    assert host.call("conf", "get", b"from") == b"argument"


def test_a_native_plugins_sidecar_may_not_carry_extism_keys(host: PluginHost,
                                                          tmp_path: Path) -> None:
    path = write(tmp_path, "echo.wasm", echo_wasm())
    (tmp_path / "echo.toml").write_text("allowed_hosts = [\"example.org\"]\n")
    with pytest.raises(ConfigError, match="'allowed_hosts' is an Extism manifest key"):
        host.load(path)
    assert len(host) == 0


def test_an_abi_without_an_entry_is_refused_naming_what_the_host_runs(
        host: PluginHost, engine: SandboxEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    wasix = dataclasses.replace(PluginModule.load(engine, echo_wasm()), abi="wasix")
    with pytest.raises(UnsupportedAbiVersion, match=r"ABI 'wasix'.* runs the ABIs 1, "
                                                    r"'extism', 'component'") as caught:
        kind_of(wasix)
    assert caught.value.plugin == "echo"
    # Through the host: a table without the module's ABI loads nothing and leaves no entry.
    monkeypatch.delitem(RUNTIMES, 1)
    with pytest.raises(UnsupportedAbiVersion, match="ABI 1"):
        host.load(echo_wasm())
    assert len(host) == 0 and "echo" not in host
