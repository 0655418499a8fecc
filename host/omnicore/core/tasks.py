"""TaskEngine: an asyncio worker pool for async and sync callables.

``await engine.submit(fn, *args)`` queues a call and returns a :class:`TaskHandle`; awaiting
the handle gives the result or raises the task's exception. Coroutine functions run on the
loop; plain callables run in a thread pool of the same size, so a blocking call never stalls
the loop. A failing task is captured in its handle and published as ``TaskFailed``; the
worker moves on. ``await engine.stop(timeout)`` drains queued and running tasks, then cancels
what is left.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import inspect
import itertools
import time
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from omnicore.core.events import EventBus, TaskFailed, TaskFinished, TaskStarted
from omnicore.core.lifecycle import Lifecycle, State
from omnicore.errors import LifecycleError
from omnicore.logging import BoundLogger, get_logger

__all__ = ["TaskEngine", "TaskHandle"]

_ids = itertools.count(1)


class TaskHandle:
    """The future result of one submitted task; ``await handle`` returns it or raises."""

    __slots__ = ("_future", "id", "name")

    def __init__(self, name: str, future: asyncio.Future[Any]) -> None:
        self.id = next(_ids)
        self.name = name
        self._future = future
        # A failure is reported as an event; nobody has to await the handle to "retrieve" it,
        # so keep asyncio from logging "exception was never retrieved" at garbage collection.
        future.add_done_callback(_mark_retrieved)

    def __await__(self) -> Generator[Any, None, Any]:
        return asyncio.shield(self._future).__await__()

    def done(self) -> bool:
        """Whether the task finished, failed or was cancelled."""
        return self._future.done()

    def cancelled(self) -> bool:
        """Whether the task was cancelled (by :meth:`cancel` or at shutdown)."""
        return self._future.cancelled()

    def cancel(self) -> bool:
        """Cancel the task if it has not finished; a running sync task still runs to its end."""
        return self._future.cancel()

    def result(self) -> Any:
        """The task's result; raises its exception, or ``InvalidStateError`` if not done."""
        return self._future.result()

    def exception(self) -> BaseException | None:
        """The task's exception, or ``None``."""
        return self._future.exception()

    def __repr__(self) -> str:
        state = "done" if self.done() else "pending"
        return f"<TaskHandle #{self.id} {self.name} {state}>"


def _mark_retrieved(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


def _name_of(fn: Any) -> str:
    if isinstance(fn, functools.partial):
        return _name_of(fn.func)
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or fn)


class TaskEngine:
    """An async worker pool of ``workers`` workers on the running event loop."""

    def __init__(self, workers: int = 4, *, events: EventBus | None = None,
                 queue_size: int = 0, log: BoundLogger | None = None) -> None:
        if workers < 1:
            raise ValueError(f"TaskEngine needs at least 1 worker, got {workers}")
        self.workers = workers
        self.events = events
        self.log = log or get_logger("omnicore.tasks")
        self._queue_size = queue_size
        self._lifecycle = Lifecycle("the task engine")
        self._queue: asyncio.Queue[tuple[TaskHandle, Callable[[], Any]]] | None = None
        self._workers: list[asyncio.Task[None]] = []
        self._executor: ThreadPoolExecutor | None = None
        self._running: dict[int, asyncio.Task[Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def state(self) -> State:
        """The engine's lifecycle state."""
        return self._lifecycle.state

    @property
    def pending(self) -> int:
        """Tasks queued and not yet picked up by a worker."""
        return self._queue.qsize() if self._queue is not None else 0

    @property
    def running(self) -> int:
        """Tasks a worker is running now."""
        return len(self._running)

    async def start(self) -> None:
        """Start the workers on the running loop."""
        self._lifecycle.transition(State.STARTING)
        self._loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue(self._queue_size)
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="omnicore-task")
        self._workers = [
            asyncio.create_task(self._work(), name=f"omnicore-worker-{i}")
            for i in range(self.workers)
        ]
        self._lifecycle.transition(State.RUNNING)

    async def submit(self, fn: Callable[..., Any], *args: Any, name: str | None = None,
                     **kwargs: Any) -> TaskHandle:
        """Queue ``fn(*args, **kwargs)``; wait only if a bounded queue is full."""
        if self._lifecycle.state is not State.RUNNING or self._queue is None:
            raise LifecycleError(f"cannot submit to the task engine: it is "
                                 f"{self._lifecycle.state.value} (start it first)"
                                 if self._lifecycle.state is State.CREATED else
                                 f"cannot submit to the task engine: it is "
                                 f"{self._lifecycle.state.value}")
        if not callable(fn):
            raise TypeError(f"submit() needs a callable, got {fn!r}")
        handle = TaskHandle(name or _name_of(fn), asyncio.get_running_loop().create_future())
        await self._queue.put((handle, functools.partial(fn, *args, **kwargs)))
        return handle

    def submit_threadsafe(self, fn: Callable[..., Any], *args: Any, name: str | None = None,
                          **kwargs: Any) -> concurrent.futures.Future[Any]:
        """From any thread but the loop's: queue ``fn`` and get a future of its *result*.

        For sync code (an embedding app, a host function called from wasm) that has no loop.
        """
        loop = self._loop
        if loop is None or self._lifecycle.state is not State.RUNNING:
            raise LifecycleError(f"cannot submit to the task engine: it is "
                                 f"{self._lifecycle.state.value}")
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise LifecycleError("submit_threadsafe() would deadlock on the engine's own loop; "
                                 "use await engine.submit()")

        async def submit_and_wait() -> Any:
            handle = await self.submit(fn, *args, name=name, **kwargs)
            return await handle

        return asyncio.run_coroutine_threadsafe(submit_and_wait(), loop)

    async def _work(self) -> None:
        assert self._queue is not None
        queue = self._queue
        while True:
            handle, call = await queue.get()
            try:
                if not handle.done():
                    await self._run_one(handle, call)
            finally:
                queue.task_done()

    async def _run_one(self, handle: TaskHandle, call: Callable[[], Any]) -> None:
        fut = handle._future
        self._publish(TaskStarted(task_id=handle.id, name=handle.name))
        t0 = time.perf_counter()
        task = asyncio.create_task(self._invoke(call), name=f"omnicore-task-{handle.id}")
        self._running[handle.id] = task
        # handle.cancel() on a running task must reach the coroutine, not only the future.
        fut.add_done_callback(lambda f: task.cancel() if f.cancelled() else None)
        try:
            result = await task
        except asyncio.CancelledError:
            fut.cancel()
            self._publish(TaskFailed(task_id=handle.id, name=handle.name,
                                     error="cancelled", cancelled=True))
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            # Only the task was cancelled (by handle.cancel() or the stop grace): keep working.
            return
        except Exception as exc:
            if not fut.done():
                fut.set_exception(exc)
            self.log.warning("task %s #%d failed: %s: %s", handle.name, handle.id,
                             type(exc).__name__, exc)
            self._publish(TaskFailed(task_id=handle.id, name=handle.name,
                                     error=f"{type(exc).__name__}: {exc}", exc=exc))
        else:
            if not fut.done():
                fut.set_result(result)
            self._publish(TaskFinished(task_id=handle.id, name=handle.name,
                                       duration_s=time.perf_counter() - t0))
        finally:
            self._running.pop(handle.id, None)

    async def _invoke(self, call: Callable[[], Any]) -> Any:
        target = call.func if isinstance(call, functools.partial) else call
        if inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
                getattr(target, "__call__", None)):  # noqa: B004
            return await call()
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._executor, call)
        if inspect.isawaitable(result):
            result = await result
        return result

    def _publish(self, event: Any) -> None:
        if self.events is not None:
            self.events.publish(event)

    async def stop(self, timeout: float | None = None) -> int:
        """Refuse new tasks, wait up to ``timeout`` s for the queue to drain, cancel the rest.

        Return how many tasks were cancelled. ``None`` waits without a limit.
        """
        self._lifecycle.transition(State.STOPPING)
        cancelled = 0
        queue = self._queue
        assert queue is not None
        try:
            await asyncio.wait_for(queue.join(), timeout)
        except TimeoutError:
            while not queue.empty():
                handle, _ = queue.get_nowait()
                if handle.cancel():
                    cancelled += 1
                self._publish(TaskFailed(task_id=handle.id, name=handle.name,
                                         error="cancelled at shutdown", cancelled=True))
                queue.task_done()
            for task in list(self._running.values()):
                if task.cancel():
                    cancelled += 1
            if cancelled:
                self.log.warning("task engine stop: cancelled %d task(s) after %.3gs grace",
                                 cancelled, timeout)
        for w in self._workers:
            w.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        if self._executor is not None:
            # Threads cannot be interrupted; do not wait for a sync task that outlived the grace.
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._lifecycle.transition(State.STOPPED)
        return cancelled

