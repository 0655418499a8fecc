"""The fast call path: GIL release, memory bounds (its private names: test_wasmtime.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from omnicore.errors import DeadlineExceeded
from omnicore.sandbox import HostTrap, Limits, PluginRuntime
from tests.sandbox_fixtures import wait_for

Make = Callable[..., PluginRuntime]


def _spin_in_background(rt: PluginRuntime) -> tuple[threading.Thread, threading.Event]:
    """Start the fixture's endless `spin` in a thread; the event is set when it ends."""
    done = threading.Event()

    def spin() -> None:
        try:
            rt.call("spin", b"")
        except DeadlineExceeded:
            pass
        done.set()

    t = threading.Thread(target=spin)
    t.start()
    return t, done


def test_gil_is_released_while_in_wasm(make: Make) -> None:
    rt = make("loop", limits=Limits(timeout_ms=300))
    t, done = _spin_in_background(rt)
    wait_for(lambda: rt.stats()["busy"] == 1, what="the spin call to start")
    # If the wasm thread held the GIL, this loop could not make progress until it finished.
    count = 0
    start = time.monotonic()
    while time.monotonic() - start < 0.1:
        count += 1
    assert not done.is_set(), "the guest should still be spinning"
    assert count > 10_000
    t.join()


def test_calls_overlap_while_one_is_in_wasm(make: Make) -> None:
    # With pool_size 2, a second call completes while the first is still inside the guest:
    # calls are neither serialised by a runtime lock nor by the GIL.
    rt = make("loop", limits=Limits(timeout_ms=500, pool_size=2))
    t, done = _spin_in_background(rt)
    wait_for(lambda: rt.stats()["busy"] == 1, what="the spin call to start")
    for _ in range(100):
        assert rt.call("ok", b"") == b""
    assert not done.is_set()
    assert rt.stats()["busy"] == 1
    t.join()


@pytest.mark.parametrize(("ptr", "length"), [(-1, 1), (0, -1), (2**32, 0), (131072, 1),
                                             (131000, 100), (2**31, 2**31)])
def test_guest_memory_bounds(make: Make, ptr: int, length: int) -> None:
    rt = make("loop")  # 2 pages = 131072 bytes
    inst = rt._idle[0]
    with pytest.raises(HostTrap, match="out-of-bounds"):
        inst.memory.read(ptr, length)
    if length >= 0:
        with pytest.raises(HostTrap, match="out-of-bounds"):
            inst.memory.write(ptr, b"x" * min(max(length, 1), 1000))


def test_guest_memory_in_bounds_edges(make: Make) -> None:
    rt = make("loop")
    mem = rt._idle[0].memory
    mem.write(131072 - 4, b"abcd")
    assert mem.read(131072 - 4, 4) == b"abcd"
    assert mem.read(131072, 0) == b""
    assert mem.write_result(b"toolong", 0, 3) == 7  # did not fit: nothing written
    assert mem.read(0, 3) != b"too"


def test_a_closed_instance_has_no_memory_view_and_is_freed_at_once(echo: PluginRuntime) -> None:
    """After close the view would read a freed store: it is gone, and with it the
    instance <-> memory cycle, so the instance goes without waiting for the collector."""
    import weakref

    inst = echo._pool.acquire("echo")
    assert inst.memory.size > 0
    echo._pool.release(inst, False)
    with pytest.raises(AttributeError):
        inst.memory  # noqa: B018
    ref = weakref.ref(inst)
    del inst
    assert ref() is None
