"""Builders for the host tests' plugins (WAT fixtures compiled with wasmtime.wat2wasm)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import wasmtime

if TYPE_CHECKING:
    from omnicore.plugins.host import PluginHost

FIXTURES = Path(__file__).parent / "fixtures"


def echo_wasm(name: str = "echo", version: str = "1.0.0") -> bytes:
    """The host_echo fixture named ``name`` whose ``version`` handler answers ``version``."""
    src = (FIXTURES / "host_echo.wat").read_text()
    src = src.replace("NAME_TAG", name).replace("VERSION_LEN", str(len(version)))
    return wasmtime.wat2wasm(src.replace("VERSION_TAG", version))


def in_flight(host: PluginHost, name: str) -> int:
    """How many calls of ``name``'s current version are running: a test's gate before it acts
    on a call in flight (a sleep is no gate on a loaded machine)."""
    version = host._entries.require(name).version
    return version.inflight if version is not None else 0


def config_wasm(name: str = "conf") -> bytes:
    """A plugin importing omnicore:config whose ``get`` answers the value at the input key."""
    src = (FIXTURES / "host_config.wat").read_text().replace("NAME_TAG", name)
    return wasmtime.wat2wasm(src)


#: Kept out of fixtures/ (every file there is loaded by the folder and ABI fixture tests).
GROWER_WAT = """\
;; A plugin whose calls grow its memory and burn fuel: the console's memory and fuel charts.
(module
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 1024))
  (func $alloc (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (local.get $p)
                               (i32.and (i32.add (local.get $n) (i32.const 7)) (i32.const -8))))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  ;; One MiB more linear memory a call.
  (func (export "grow") (param i32 i32) (result i64)
    (drop (memory.grow (i32.const 16)))
    (i64.const 0))
  (func $spin (param $n i32)
    (loop $l
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $l (local.get $n))))
  ;; A hundred thousand loop turns, then an empty answer.
  (func (export "burn") (param i32 i32) (result i64)
    (call $spin (i32.const 100000))
    (i64.const 0))
  ;; The same turns, then a trap: the instance is discarded, what it burnt still counts.
  (func (export "burn_trap") (param i32 i32) (result i64)
    (call $spin (i32.const 100000))
    unreachable)
)
"""


def grower_wasm() -> bytes:
    """A plugin whose ``grow`` adds 1 MiB of memory a call and whose ``burn`` and
    ``burn_trap`` spin a hundred thousand loop turns (fuel), the second then trapping."""
    return wasmtime.wat2wasm(GROWER_WAT)


def write(folder: Path, filename: str, data: bytes) -> Path:
    """Write a plugin file the way a deploy script would: in place, in one go."""
    path = folder / filename
    path.write_bytes(data)
    return path
