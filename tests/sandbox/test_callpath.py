"""The C call path (sandbox/_callpath.c): built and chosen, and hostile to misuse.

Every other sandbox test runs on whichever path is chosen; `scripts/dev test` runs them on
both (OMNICORE_CALLPATH=native for the suite, then python for tests/sandbox, where the tests
marked ``native`` are deselected).
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from omnicore.sandbox import PluginRuntime, fastcall

Make = Callable[..., PluginRuntime]
_CHOICE = os.environ.get("OMNICORE_CALLPATH", "auto")
native = pytest.mark.native


def _instance(rt: PluginRuntime) -> fastcall.RawInstance:
    inst = rt._pool.acquire("echo")
    rt._pool.release(inst, True)
    return inst


def test_the_chosen_path_is_the_one_asked_for(echo: PluginRuntime) -> None:
    # scripts/dev sets OMNICORE_CALLPATH for both runs: a C path that failed to build or to
    # load fails here, not silently on the slower path.
    if _CHOICE == "python":
        assert not fastcall.NATIVE and _instance(echo).slot is None
    else:
        assert fastcall.NATIVE, "the C call path is not built: run scripts/dev setup"
        assert _instance(echo).slot is not None
    assert echo.call("echo", b"x" * 100) == b"x" * 100


def test_an_unknown_choice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMNICORE_CALLPATH", "fast")
    with pytest.raises(RuntimeError, match="OMNICORE_CALLPATH='fast': use auto, native or python"):
        fastcall._native_call_path()


@native
def test_input_growth_and_every_size_round_trip(echo: PluginRuntime) -> None:
    # The C path answers False when the input outgrows the block; Python grows it and calls
    # again. Sizes straddle the initial 64 KiB block and its doublings.
    for n in (0, 1, 65535, 65536, 65537, 200_000, 3):
        data = os.urandom(n)
        assert echo.call("echo", data) == data
    assert _instance(echo).slot.cap >= 200_000


@native
def test_slot_refuses_misuse_without_touching_memory(echo: PluginRuntime) -> None:
    inst = _instance(echo)
    slot, func = inst.slot, inst.func("echo")
    with pytest.raises(TypeError, match="data must be bytes"):
        slot.call(func, bytearray(b"x"), 1, -1, 10)
    with pytest.raises(TypeError, match="call\\(func, data, ticks, epoch, max_output\\)"):
        slot.call(func, b"x")
    with pytest.raises(ValueError, match="no function"):
        slot.call(0, b"x", 1, -1, 10)
    with pytest.raises(OverflowError):
        slot.call(func, b"x", -1, -1, 10)
    with pytest.raises(ValueError, match="non-null"):
        fastcall._callpath.Slot(0, 0, 1.0)
    # An output over max_output is handed back packed, for Python's OutputTooLarge.
    packed = slot.call(func, b"abc", 100, -1, 2)
    assert isinstance(packed, int) and packed & 0x7FFF_FFFF == 3


@native
def test_a_closed_instance_refuses_calls(make: Make) -> None:
    rt = make("echo")
    inst = _instance(rt)
    slot, func = inst.slot, inst.func("echo")
    rt.close()
    with pytest.raises(ValueError, match="the instance is closed"):
        slot.call(func, b"x", 1, -1, 10)


@native
def test_a_c_instance_refuses_misuse_without_touching_a_store(echo: PluginRuntime) -> None:
    # _callpath.Instance makes and owns a store (RawInstance's start in C): it must never
    # start twice over a live store, start what it has not instantiated, or leak a store.
    fresh = fastcall._callpath.Instance()
    with pytest.raises(ValueError, match="no instance to start"):
        fresh.start(True, 10)
    with pytest.raises(ValueError, match="non-null"):
        fresh.instantiate(0, 0, 0, 1 << 20, 10, 1, 1, None, {}, None)
    with pytest.raises(TypeError, match="instantiate\\(engine, pre, wasi"):
        fresh.instantiate(echo._engine_addr)
    with pytest.raises(OverflowError):
        fresh.instantiate(echo._engine_addr, echo._pre_addr, 0, 1 << 20, 10, 1, -1, None, {},
                          None)
    assert fresh.store == 0
    inst = _instance(echo)
    owner = inst._owner
    assert isinstance(owner, fastcall._callpath.Instance) and owner.store == inst._store != 0
    with pytest.raises(ValueError, match="already holds an instance"):
        owner.instantiate(echo._engine_addr, echo._pre_addr, 0, 1 << 20, 10, 1, 1, None, {},
                          None)
    with pytest.raises(ValueError, match="started already"):
        owner.start(True, 10)  # _initialize runs once (specs/abi.md §1.2)
    assert echo.call("echo", b"still served") == b"still served"
    echo.close()
    assert owner.store == 0
    with pytest.raises(ValueError, match="no instance to start"):
        owner.start(True, 10)
    owner.close()  # idempotent
    # A fresh store in the same Instance, started and freed again.
    live: dict[int, object] = {}
    ctx = owner.instantiate(echo._engine_addr, echo._pre_addr, 0, 1 << 20, 10, 1, 1000,
                            "echo", live, owner)
    assert ctx != 0 and live == {ctx: owner}  # registered for its start function's host calls
    assert owner.handler and owner.externs == 3
    assert owner.start(False, 100) is None and (owner.cap, owner.buf != 0) == (128, True)
    owner.close()
    assert owner.store == 0
