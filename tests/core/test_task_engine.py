from __future__ import annotations

import asyncio
import threading
import time

import pytest

from omnicore.core.events import EventBus, TaskFailed, TaskFinished, TaskStarted
from omnicore.core.lifecycle import State
from omnicore.core.tasks import TaskEngine
from omnicore.errors import LifecycleError


async def test_async_and_sync_results() -> None:
    engine = TaskEngine(workers=2)
    await engine.start()

    async def add(a: int, b: int) -> int:
        await asyncio.sleep(0)
        return a + b

    main_thread = threading.current_thread()

    def where() -> bool:
        return threading.current_thread() is not main_thread

    h1 = await engine.submit(add, 2, b=3)
    h2 = await engine.submit(where)
    assert await h1 == 5
    assert await h2 is True  # sync callables run in the thread pool
    assert h1.done() and h1.result() == 5 and h1.name.endswith("add")
    await engine.stop()
    assert engine.state is State.STOPPED


async def test_workers_run_concurrently_and_sync_work_does_not_block_loop() -> None:
    engine = TaskEngine(workers=4)
    await engine.start()
    # All four must be inside at once to pass the barrier: in series the first would wait
    # for the others until the barrier broke. No duration is asserted.
    meet = threading.Barrier(4, timeout=30)

    def together() -> None:
        meet.wait()
        time.sleep(0.2)

    handles = [await engine.submit(together) for _ in range(4)]
    ticks = 0
    while not all(h.done() for h in handles):
        await asyncio.sleep(0.01)
        ticks += 1
    for h in handles:
        await h  # a broken barrier would raise here
    assert ticks >= 5  # the loop kept running meanwhile
    await engine.stop()


async def test_exception_captured_published_and_engine_keeps_running() -> None:
    bus = EventBus()
    events: list[object] = []
    bus.subscribe("task.*", events.append)
    engine = TaskEngine(workers=1, events=bus)
    await engine.start()

    def boom() -> None:
        raise ValueError("bad input 7")

    h = await engine.submit(boom)
    with pytest.raises(ValueError, match="bad input 7"):
        await h
    assert isinstance(h.exception(), ValueError)
    ok = await engine.submit(lambda: "still alive")
    assert await ok == "still alive"
    await engine.stop()
    failed = [e for e in events if isinstance(e, TaskFailed)]
    assert len(failed) == 1 and failed[0].error == "ValueError: bad input 7"
    assert failed[0].task_id == h.id and isinstance(failed[0].exc, ValueError)
    assert sum(isinstance(e, TaskStarted) for e in events) == 2
    assert sum(isinstance(e, TaskFinished) for e in events) == 1


async def test_stop_drains_queued_work() -> None:
    engine = TaskEngine(workers=1)
    await engine.start()
    done: list[int] = []

    async def job(i: int) -> None:
        await asyncio.sleep(0.01)
        done.append(i)

    for i in range(5):
        await engine.submit(job, i)
    assert engine.pending >= 3
    assert await engine.stop(timeout=5) == 0
    assert done == [0, 1, 2, 3, 4]


async def test_stop_timeout_cancels_running_and_queued() -> None:
    bus = EventBus()
    failed: list[TaskFailed] = []
    bus.subscribe(TaskFailed, failed.append)
    engine = TaskEngine(workers=1, events=bus)
    await engine.start()
    h1 = await engine.submit(asyncio.sleep, 30)
    h2 = await engine.submit(asyncio.sleep, 30)
    await asyncio.sleep(0.01)
    t0 = time.perf_counter()
    assert await engine.stop(timeout=0.05) == 2
    assert time.perf_counter() - t0 < 1
    assert h1.cancelled() and h2.cancelled()
    with pytest.raises(asyncio.CancelledError):
        await h1
    assert {f.task_id for f in failed} == {h1.id, h2.id} and all(f.cancelled for f in failed)


async def test_handle_cancel_reaches_running_coroutine() -> None:
    engine = TaskEngine(workers=1)
    await engine.start()
    reached = asyncio.Event()

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            reached.set()
            raise

    h = await engine.submit(slow)
    await asyncio.sleep(0.01)
    assert h.cancel()
    await asyncio.wait_for(reached.wait(), 1)
    h2 = await engine.submit(lambda: 1)  # the worker survived
    assert await h2 == 1
    await engine.stop()


async def test_lifecycle_refusals() -> None:
    engine = TaskEngine(workers=1)
    with pytest.raises(LifecycleError, match="start it first"):
        await engine.submit(print)
    with pytest.raises(LifecycleError, match="never started"):
        await engine.stop()
    await engine.start()
    with pytest.raises(LifecycleError, match="already running"):
        await engine.start()
    with pytest.raises(TypeError, match="needs a callable"):
        await engine.submit(42)  # type: ignore[arg-type]
    await engine.stop()
    with pytest.raises(LifecycleError, match="stopped"):
        await engine.submit(print)
    with pytest.raises(ValueError, match="at least 1 worker"):
        TaskEngine(workers=0)


async def test_bounded_queue_applies_backpressure() -> None:
    engine = TaskEngine(workers=1, queue_size=1)
    await engine.start()
    gate = asyncio.Event()
    await engine.submit(gate.wait)
    await asyncio.sleep(0.01)  # the worker holds the first task
    await engine.submit(gate.wait)  # fills the queue
    blocked = asyncio.ensure_future(engine.submit(gate.wait))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    gate.set()
    await asyncio.wait_for(blocked, 1)
    await engine.stop(timeout=1)


async def test_submit_threadsafe_refuses_its_own_loop() -> None:
    engine = TaskEngine(workers=1)
    with pytest.raises(LifecycleError):
        engine.submit_threadsafe(print)
    await engine.start()
    with pytest.raises(LifecycleError, match="deadlock"):
        engine.submit_threadsafe(print)
    result = await asyncio.to_thread(lambda: engine.submit_threadsafe(sum, [1, 2]).result(2))
    assert result == 3
    await engine.stop()
