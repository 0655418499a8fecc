"""What a plugin's instances hold and burn (sandbox.usage): linear memory read from idle
instances without racing a call, fuel counted by each metered call, kept when an instance
is discarded after a trap."""

from __future__ import annotations

import threading

import pytest

from omnicore.errors import Trap
from omnicore.plugins.host import PluginHost
from tests.host_fixtures import grower_wasm

MIB = 1 << 20


def test_memory_grows_with_the_calls_that_grow_it() -> None:
    with PluginHost() as host:
        host.load(grower_wasm(), name="grower")
        [(name, before)] = host.usage_items()
        assert name == "grower" and before.memory_bytes == 128 * 1024 and before.fuel is None
        host.call("grower", "grow")
        host.call("grower", "grow")
        assert dict(host.usage_items())["grower"].memory_bytes == before.memory_bytes + 2 * MIB


def test_an_instance_the_idle_sweep_parked_is_measured_at_its_grown_size() -> None:
    # The reaper parks idle instances at one sweep and frees them at a later one; meanwhile
    # they are neither listed idle nor busy. Measured by the size a host access last saw, a
    # parked instance its guest grew read 128 KiB (the console's live chart, on a loaded CI).
    # Metered, as that chart's plugin: no host access after the growth re-reads the size.
    with PluginHost() as host:
        host.load(grower_wasm(), name="grower",
                  limits={"idle_timeout_ms": 1000, "fuel": 10_000_000})
        host.call("grower", "grow")
        host.call("grower", "grow")
        pool = host._entries.get("grower").version.runtime._pool  # type: ignore[union-attr]
        assert pool.sweep(1000.0) == 0 and pool.stats()["idle"] == 1 and not pool.idle
        assert dict(host.usage_items())["grower"].memory_bytes == 128 * 1024 + 2 * MIB
        assert pool.stats()["idle"] == 1 and not pool.idle    # still parked: freed on time
        assert pool.sweep(1002.0) == 1
        assert dict(host.usage_items())["grower"].memory_bytes == 0
        host.call("grower", "grow")                          # a fresh instance, grown once
        assert dict(host.usage_items())["grower"].memory_bytes == 128 * 1024 + MIB


def test_fuel_counts_every_metered_call_and_survives_a_discarded_instance() -> None:
    with PluginHost() as host:
        host.load(grower_wasm(), name="grower", limits={"fuel": 10_000_000})
        assert dict(host.usage_items())["grower"].fuel == 0
        host.call("grower", "burn")
        one = dict(host.usage_items())["grower"].fuel
        assert one is not None and one >= 100_000          # a turn costs at least one unit
        host.call("grower", "burn")
        two = dict(host.usage_items())["grower"].fuel
        assert two is not None and two > one
        with pytest.raises(Trap):
            host.call("grower", "burn_trap")                # its instance is thrown away
        after = dict(host.usage_items())["grower"].fuel
        assert after is not None and after >= two + 100_000


def test_fuel_outlives_instances_freed_per_call_or_when_idle() -> None:
    """Every other way an instance goes: its one call under per-call isolation, the idle
    sweep. What they burnt stays in the total; the memory they held does not."""
    with PluginHost() as host:
        host.load(grower_wasm(), name="once", limits={"fuel": 10_000_000,
                                                      "isolation": "per-call"})
        host.call("once", "grow")
        host.call("once", "burn")
        host.call("once", "burn")
        use = dict(host.usage_items())["once"]
        assert use.memory_bytes == 0                         # no instance outlives its call
        assert use.fuel is not None and use.fuel >= 200_000

        host.load(grower_wasm(), name="idler", limits={"fuel": 10_000_000,
                                                       "idle_timeout_ms": 1000})
        host.call("idler", "burn")
        before = dict(host.usage_items())["idler"]
        pool = host._entries.get("idler").version.runtime._pool  # type: ignore[union-attr]
        assert pool.sweep(1000.0) == 0 and pool.sweep(1002.0) == 1   # parked, then freed
        after = dict(host.usage_items())["idler"]
        assert after.memory_bytes == 0 and after.fuel == before.fuel and after.fuel


def test_measuring_while_calls_run_never_breaks_a_call() -> None:
    """The sampler takes idle instances out of the pool for the read: callers racing it get
    another instance or wait, and every call still answers."""
    with PluginHost() as host:
        host.load(grower_wasm(), name="grower",
                  limits={"fuel": 10_000_000, "pool_size": 2})
        stop = threading.Event()
        failures: list[BaseException] = []

        def caller() -> None:
            try:
                for _ in range(300):
                    host.call("grower", "burn")
            except BaseException as exc:
                failures.append(exc)

        def sampler() -> None:
            while not stop.is_set():
                use = dict(host.usage_items())["grower"]
                assert use.memory_bytes >= 128 * 1024

        threads = [threading.Thread(target=caller) for _ in range(3)]
        watcher = threading.Thread(target=sampler)
        watcher.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        stop.set()
        watcher.join(30)
        assert failures == []
        use = dict(host.usage_items())["grower"]
        assert use.fuel is not None and use.fuel >= 900 * 100_000
        # Every instance is back in the pool: none was lost to the sampler.
        stats = host._entries.get("grower").version.runtime.stats()  # type: ignore[union-attr]
        assert stats["busy"] == 0 and stats["live"] == stats["idle"]
