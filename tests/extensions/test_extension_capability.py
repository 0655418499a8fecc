"""A Python host extension contributes a capability through the same `capabilities` hook the
built-ins use, and wasm plugins get it only when granted, each with its own state."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from omnicore.app import OmniApp
from omnicore.errors import ConfigError, InvalidModule, NeedsGrant
from omnicore.sandbox import Capability, GuestMemory, HostFunction, PluginContext

TALLY_WAT = r"""
(module
  (import "omnicore:tally" "next" (func $next (param i64) (result i64)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32) (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p) (local.get $n))) (local.get $p))
  (func (export "omni_free") (param i32 i32))
  ;; Add the input's length to this plugin's tally; output the new total as 8 bytes LE.
  (func (export "bump") (param $p i32) (param $n i32) (result i64)
    (i64.store (i32.const 64) (call $next (i64.extend_i32_u (local.get $n))))
    (i64.or (i64.shl (i64.const 64) (i64.const 32)) (i64.const 8)))
  (@custom "omnicore.manifest" "{\"abi\": 1, \"name\": \"NAME\"}")
)
"""


class Tally:
    """Per-plugin running totals, kept where the extension can see them."""

    def __init__(self) -> None:
        self.totals: dict[str, int] = {}

    def bind(self, ctx: PluginContext) -> str:
        # The state handed to every host function is the calling plugin's own name.
        self.totals.setdefault(ctx.plugin, 0)
        return ctx.plugin

    def next(self, plugin: str, _mem: GuestMemory, delta: int) -> int:
        self.totals[plugin] += delta
        return self.totals[plugin]


class TallyExtension:
    name = "tally-extension"

    def __init__(self) -> None:
        self.tally = Tally()

    def capabilities(self, app: Any) -> list[Capability]:
        return [Capability(name="tally", description="per-plugin running totals",
                           functions=(HostFunction("next", ("i64",), ("i64",),
                                                   self.tally.next),),
                           bind=self.tally.bind)]


def tally_wasm(name: str) -> bytes:
    return bytes(wasmtime.wat2wasm(TALLY_WAT.replace("NAME", name)))


@pytest.fixture
def app(tmp_path: Path) -> Iterator[OmniApp]:
    app = OmniApp("ext-test", overrides={"data_dir": str(tmp_path / "data"),
                                         "plugins_dir": str(tmp_path / "plugins")},
                  environ={}, entry_points=False)
    yield app
    if app.state.value == "running":
        app.stop()


def test_an_extension_capability_is_linked_when_granted_and_scoped_per_plugin(
        app: OmniApp) -> None:
    ext = TallyExtension()
    app.extensions.register(ext)
    app.start()
    app.plugins.load(tally_wasm("one"), grants=["tally"])
    app.plugins.load(tally_wasm("two"), grants=["tally"])

    def bump(plugin: str, data: bytes) -> int:
        return int(struct.unpack("<q", app.plugins.call(plugin, "bump", data))[0])

    assert bump("one", b"abc") == 3
    assert bump("one", b"de") == 5
    assert bump("two", b"x") == 1  # two's tally is its own
    assert ext.tally.totals == {"one": 5, "two": 1}
    assert "tally" in app.plugins.get("one").requested


def test_an_extension_capability_still_needs_the_operators_grant(app: OmniApp) -> None:
    app.extensions.register(TallyExtension())
    app.start()
    info = app.plugins.load(tally_wasm("greedy"))
    assert info.state == "needs-grant" and info.missing == ("tally",)
    with pytest.raises(NeedsGrant):
        app.plugins.call("greedy", "bump", b"")


def test_without_the_extension_the_namespace_is_unknown(app: OmniApp) -> None:
    app.start()
    with pytest.raises(InvalidModule, match="omnicore:tally"):
        app.plugins.load(tally_wasm("orphan"))
    with pytest.raises(ConfigError, match="unknown capability 'tally'"):
        app.plugins.load(tally_wasm("orphan"), grants=["tally"])
