"""The events plugin the subscription and ``omnicore:events`` tests load.

The guest is a WAT plugin: ``pub`` publishes what its input says, ``on_event`` counts in kv
and keeps the last body it got, ``relay`` publishes ``ping`` on every event it receives,
``stall`` spins until its deadline.
"""

from __future__ import annotations

import json
import struct
import threading
from collections.abc import Callable
from typing import Any

import wasmtime

from omnicore.app import OmniApp
from omnicore.sandbox import wasmbin

__all__ = ["EVENTS_WAT", "GRANTS", "Calls", "events_app", "events_wasm", "pub", "seen"]

EVENTS_WAT = r"""
(module
  (import "omnicore:events" "publish" (func $publish (param i32 i32 i32 i32) (result i32)))
  (import "omnicore:kv" "incr" (func $incr (param i32 i32 i64 i32) (result i32)))
  (import "omnicore:kv" "set" (func $set (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 16)
  (global $bump (mut i32) (i32.const 0x40000))
  (data (i32.const 0x100) "ping")
  (data (i32.const 0x110) "seen")
  (data (i32.const 0x120) "last")
  (func (export "omni_alloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $bump))
    (global.set $bump (i32.and (i32.add (i32.add (global.get $bump) (local.get $n))
                                        (i32.const 7)) (i32.const -8)))
    (local.get $p))
  (func (export "omni_free") (param i32 i32))
  ;; input: topic_len u32 | topic | payload -> output: the i32 status
  (func (export "pub") (param $p i32) (param $n i32) (result i64)
    (local $t i32)
    (local.set $t (i32.load (local.get $p)))
    (i32.store (i32.const 0x20000)
      (call $publish (i32.add (local.get $p) (i32.const 4)) (local.get $t)
                     (i32.add (i32.add (local.get $p) (i32.const 4)) (local.get $t))
                     (i32.sub (i32.sub (local.get $n) (i32.const 4)) (local.get $t))))
    (i64.or (i64.shl (i64.const 0x20000) (i64.const 32)) (i64.const 4)))
  ;; "last" before "seen": a test that waits for the count reads the event it counted (the
  ;; other order left a moment where seen was 1 and last still empty: a flaky JSON read)
  (func (export "on_event") (param $p i32) (param $n i32) (result i64)
    (drop (call $set (i32.const 0x120) (i32.const 4) (local.get $p) (local.get $n)))
    (drop (call $incr (i32.const 0x110) (i32.const 4) (i64.const 1) (i32.const 0x20000)))
    (i64.const 0))
  (func (export "relay") (param $p i32) (param $n i32) (result i64)
    (drop (call $incr (i32.const 0x110) (i32.const 4) (i64.const 1) (i32.const 0x20000)))
    (drop (call $publish (i32.const 0x100) (i32.const 4) (i32.const 0) (i32.const 0)))
    (i64.const 0))
  (func (export "stall") (param $p i32) (param $n i32) (result i64)
    (loop $spin (br $spin))
    (i64.const 0))
)
"""


def events_wasm(name: str, subscriptions: list[dict[str, Any]] | None = None) -> bytes:
    manifest = {"name": name, "subscriptions": subscriptions or []}
    return wasmbin.set_custom_section(wasmtime.wat2wasm(EVENTS_WAT), "omnicore.manifest",
                                      json.dumps(manifest).encode())


def pub(app: OmniApp, plugin: str, topic: str, payload: bytes = b"") -> int:
    t = topic.encode()
    out = app.plugins.call(plugin, "pub", struct.pack("<I", len(t)) + t + payload)
    return int(struct.unpack("<i", out)[0])


def seen(app: OmniApp, plugin: str) -> int:
    return int(app.kv.for_plugin(plugin).get("seen") or 0)


class Calls:
    """Waits, on a condition, until the bus saw enough events of a topic pattern."""

    def __init__(self, app: OmniApp, topic: str) -> None:
        self.events: list[Any] = []
        self._cond = threading.Condition()
        app.events.subscribe(topic, self._on)

    def _on(self, event: Any) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait(self, pred: Callable[[list[Any]], bool], timeout: float = 30.0) -> None:
        with self._cond:
            assert self._cond.wait_for(lambda: pred(self.events), timeout), self.events


GRANTS = ["kv", "events", "tasks"]


def events_app(make_app: Callable[..., OmniApp]) -> OmniApp:
    """A started app with small inboxes and a low hop limit (stop it with grace=1)."""
    app = make_app(builtin_extensions=None, overrides={
        "sandbox": {"watch": False},
        "capabilities": {"events": {"queue_size": 2, "max_hops": 5},
                         "tasks": {"poll_s": 0.2, "backoff_ms": 20}}})
    app.start()
    return app
