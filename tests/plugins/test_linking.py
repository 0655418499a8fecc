"""Linking (``omnicore.plugins.linking``): every capability checks the manifest entries it
reads, on every path a plugin takes into the host, whether or not it is granted."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from wasmtime import wat2wasm

from omnicore.app import OmniApp
from omnicore.capabilities.builtin import builtin_capabilities
from omnicore.errors import ConfigError, PluginLoadError
from omnicore.plugins.host import PluginHost
from omnicore.sandbox import Capability
from omnicore.sandbox.capability import HostFunction
from omnicore.sandbox.wasmbin import set_custom_section
from tests.guest_wat import ALLOC
from tests.host_fixtures import echo_wasm, write


def check_webhooks(plugin: str, manifest: Mapping[str, Any], handlers: Sequence[str]) -> None:
    """A third-party capability's check: each ``webhooks`` entry names one of the handlers."""
    for i, hook in enumerate(manifest.get("webhooks", [])):
        if hook.get("handler") not in handlers:
            raise ConfigError(f"manifest webhooks[{i}]: no handler {hook.get('handler')!r}")


WEBHOOKS = Capability(name="webhooks", functions=(), check_manifest=check_webhooks)


def plugin(manifest: Mapping[str, Any], name: str = "echo", version: str = "1.0.0") -> bytes:
    """The echo fixture with ``manifest`` entries beside its own."""
    own = {"abi": 1, "name": name, "version": version,
           "handlers": ["echo", "version", "fail", "trap", "spin", "slow"]}
    return set_custom_section(echo_wasm(name, version), "omnicore.manifest",
                              json.dumps({**own, **manifest}).encode())


@pytest.fixture
def host() -> Iterator[PluginHost]:
    with PluginHost(capabilities=lambda: [*builtin_capabilities(), WEBHOOKS]) as h:
        yield h


def test_a_capabilitys_check_refuses_a_plugin_it_does_not_even_link(host: PluginHost) -> None:
    # The echo fixture imports nothing: the entry is checked because a broken entry is a
    # broken plugin, granted or not.
    with pytest.raises(PluginLoadError, match=r"plugin 'echo': manifest webhooks\[0\]: no "
                                              r"handler 'nope'") as caught:
        host.load(plugin({"webhooks": [{"handler": "nope"}]}))
    assert caught.value.plugin == "echo" and len(host) == 0
    info = host.load(plugin({"webhooks": [{"handler": "echo"}]}))
    assert info.state == "loaded" and "webhooks" not in info.granted


def test_the_check_holds_on_the_folders_paths_too(host: PluginHost, tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.wasm", plugin({"webhooks": [{"handler": "nope"}]}, name="bad"))
    assert host.load_file(bad) == "bad"
    assert host.get("bad").state == "failed"
    assert "no handler 'nope'" in (host.get("bad").last_error or "")
    # A reload whose new manifest fails the check keeps the working version serving.
    good = write(tmp_path, "echo.wasm", plugin({"webhooks": [{"handler": "echo"}]}))
    assert host.load_file(good) == "echo"
    write(tmp_path, "echo.wasm", plugin({"webhooks": [{"handler": "gone"}]}, version="2.0.0"))
    assert host.reload_file("echo", good) == "echo"
    info = host.get("echo")
    assert info.state == "loaded" and info.stale and info.version == "1.0.0"
    assert "still serving the previous version" in (info.last_error or "")
    assert "no handler 'gone'" in (info.last_error or "")
    assert host.call("echo", "version") == b"1.0.0"


def test_an_embedders_own_checks_run_beside_the_capabilities(host: PluginHost) -> None:
    def no_beta(plugin: str, manifest: Mapping[str, Any], _handlers: Sequence[str]) -> None:
        if "beta" in str(manifest.get("version")):
            raise ConfigError("beta versions are not deployed here")

    host.manifest_checks.append(no_beta)
    with pytest.raises(PluginLoadError, match="plugin 'echo': beta versions"):
        host.load(plugin({}, version="2.0.0-beta"))
    host.manifest_checks = []  # replacing the list works as well as changing it
    assert host.load(plugin({}, version="2.0.0-beta")).state == "loaded"


@pytest.mark.parametrize(("entries", "message"), [
    ({"schedules": [{"handler": "echo", "every": "often"}]}, r"schedules\[0\]\.every"),
    ({"schedules": [{"handler": "nope", "every": "5s"}]}, r"schedules\[0\]: no handler 'nope'"),
    ({"subscriptions": [{"topic": "plugin.*.x", "handler": "nope"}]},
     r"subscriptions\[0\]: no handler 'nope'"),
])
def test_the_built_in_checks_come_from_the_capabilities_without_an_app(
        entries: dict[str, Any], message: str) -> None:
    # A host without an app links the built-ins: tasks checks schedules, events
    # subscriptions, though neither can run here.
    with PluginHost() as host, pytest.raises(PluginLoadError, match=message):
        host.load(plugin(entries))


def test_an_extensions_capability_checks_the_plugins_of_an_app(
        make_app: Callable[..., OmniApp]) -> None:
    class Webhooks:
        name = "webhooks-extension"

        def capabilities(self, app: Any) -> list[Capability]:
            return [WEBHOOKS]

    app = make_app(builtin_extensions=None)
    app.extensions.register(Webhooks())
    folder = Path(app.config.plugins_dir)
    folder.mkdir(parents=True)
    write(folder, "bad.wasm", plugin({"webhooks": [{"handler": "nope"}]}, name="bad"))
    write(folder, "ok.wasm", plugin({"webhooks": [{"handler": "echo"}]}, name="ok"))
    app.start()
    assert app.plugins.get("ok").state == "loaded"
    bad = app.plugins.get("bad")
    assert bad.state == "failed" and "no handler 'nope'" in (bad.last_error or "")


# ---- a start that crossed its deadline: once more --------------------------------------------

class Stalls:
    """``omnicore:stall``'s ``once``: whether the calling instance's start should loop past its
    deadline (it does for the first ``times`` starts), as a start on a stalled host runs out of
    time though the code is sound."""

    def __init__(self, times: int) -> None:
        self.times, self.starts = times, 0

    def capability(self) -> Capability:
        def once(*_args: Any) -> int:
            self.starts += 1
            return int(self.starts <= self.times)

        return Capability("stall", [HostFunction("once", (), ("i32",), once)],
                          default_grant=True)


STALLS_AT_START = wat2wasm(f"""(module (import "omnicore:stall" "once" (func $once (result i32)))
  (memory (export "memory") 2) {ALLOC}
  (func $start (if (call $once) (then (loop $l (br $l)))))
  (start $start)
  (func (export "run") (param i32 i32) (result i64) (i64.const 0)))""")


def test_a_start_that_crossed_its_deadline_once_is_tried_once_more() -> None:
    """A clean-clone CI run's second host failed a sound plugin's load so (its start 1 s
    under the baseline code on a saturated machine), and a failed plugin stays failed."""
    stalls = Stalls(times=1)
    with PluginHost(capabilities=lambda: [*builtin_capabilities(), stalls.capability()]) as h:
        info = h.load(STALLS_AT_START, name="stalls", limits={"timeout_ms": 100})
        assert info.state == "loaded" and stalls.starts == 2
        assert h.call("stalls", "run") == b"" and stalls.starts == 2


def test_a_start_that_crosses_its_deadline_again_fails_the_load() -> None:
    """Once more, not until it works: the second failure is the load's, naming the deadline."""
    stalls = Stalls(times=5)
    with PluginHost(capabilities=lambda: [*builtin_capabilities(), stalls.capability()]) as h:
        with pytest.raises(PluginLoadError, match=r"plugin 'stalls' failed to start: .*"
                                                  r"exceeded its deadline of 100 ms"):
            h.load(STALLS_AT_START, name="stalls", limits={"timeout_ms": 100})
        assert stalls.starts == 2 and len(h) == 0
