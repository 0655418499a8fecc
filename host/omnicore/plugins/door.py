"""The one way into a plugin from async code: each plugin's own worker threads, handing
answers back to the event loop in batches (:class:`CallDoor`; :func:`.calls.door_for` makes a
plugin's). Apart from :mod:`.calls`, which needs the plugin's entry, so that an entry can hold
its door without an import circle.
"""

from __future__ import annotations

import contextvars
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

__all__ = ["CallDoor"]

#: How long the calls of a door's awake workers must all have run before the loop wakes
#: another worker for the calls queued behind them (CallDoor._unstick): well past a short
#: call's run (microseconds), well short of a deadline.
UNSTICK_S = 0.001


class _Answers:
    """Answers on their way back to one event loop: the workers queue them and wake the loop
    once for all that queued meanwhile (asyncio's own hand-back wakes it once per answer,
    through a ``concurrent.futures.Future`` chained to the loop's). The loop is held weakly:
    ``_answers`` is keyed by it, and a value holding its key would keep every loop a process
    ever made (``asyncio.run`` per request)."""

    __slots__ = ("__weakref__", "_done", "_loop", "_woken")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)
        self._done: deque[tuple[asyncio.Future[Any], Any, BaseException | None]] = deque()
        self._woken = False

    def put(self, fut: asyncio.Future[Any], out: Any, exc: BaseException | None) -> None:
        self._done.append((fut, out, exc))
        # A wake-up is due unless one is on its way that has not yet begun to take answers:
        # it sets _woken back before it takes, so what is appended before that is taken.
        if not self._woken:
            self._woken = True
            loop = self._loop()
            try:
                if loop is None:
                    raise RuntimeError("the loop is gone")
                loop.call_soon_threadsafe(self._hand_over)
            except RuntimeError:  # the loop is closed: nobody waits for these any more
                self._woken = False  # (and they would keep it: futures hold their loop)
                self._done.clear()

    def _hand_over(self) -> None:
        self._woken = False
        done = self._done
        while done:
            fut, out, exc = done.popleft()
            if fut.done():  # cancelled while it ran: its answer goes nowhere
                continue
            if exc is None:
                fut.set_result(out)
            elif isinstance(exc, StopIteration):
                # A future refuses it (TypeError), which would strand the rest of the batch.
                failure = RuntimeError(f"the call raised {type(exc).__name__}")
                failure.__cause__ = exc
                fut.set_exception(failure)
            else:
                fut.set_exception(exc)


#: One hand-back per event loop, shared by every plugin's door.
_answers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Answers] = \
    weakref.WeakKeyDictionary()
_answers_lock = threading.Lock()
_doors: weakref.WeakSet[CallDoor] = weakref.WeakSet()


def _answers_for(loop: asyncio.AbstractEventLoop) -> _Answers:
    answers = _answers.get(loop)
    if answers is None:
        with _answers_lock:
            answers = _answers.get(loop)
            if answers is None:
                answers = _answers[loop] = _Answers(loop)
    return answers


class _Worker:
    """One worker thread of a door: parked on its own lock until handed a call."""

    __slots__ = ("item", "since", "wake")

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()
        self.item: tuple[Any, ...] | None = None
        #: When the call it runs began (``time.monotonic``); None between calls, and while
        #: it waits for the GIL to begin one.
        self.since: float | None = None


class CallDoor:
    """One plugin's worker threads for its ``acall``s: at most ``width`` of them, made as
    calls need them. :meth:`submit` queues a call for a worker that is awake, else hands it
    to the worker parked last (the one whose caches are warm; a shared queue wakes them in
    turn), and returns the loop's future for it; calls queued behind workers that are all in
    long calls get another worker from the loop after :data:`UNSTICK_S`, up to ``width``.
    A call cancelled before a worker takes it never runs;
    one running finishes (its deadline ends it) and its answer is dropped. Every call runs in
    the submitter's context (what it set reaches the call's host functions, as with
    ``run_in_executor``)."""

    def __init__(self, name: str, width: int) -> None:
        self.name = name
        self.width = max(1, width)
        self._threads: list[threading.Thread] = []
        self._parked: list[_Worker] = []
        self._waiting: deque[tuple[Any, ...]] = deque()
        self._lock = threading.Lock()
        self._closed = False
        self._workers: list[_Worker] = []
        #: Workers not parked: running a call, or on their way back to ``_waiting``.
        self._awake = 0
        #: The loops a check of the queue (:meth:`_unstick`) is set on: one each, so a
        #: loop's check goes on whatever another loop does (one slot for all let a second
        #: loop's submit take it over, and the first loop's checks stopped with that loop
        #: closed or blocked: its queued calls waited for the held calls' deadline).
        self._checks: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()
        #: The loop submitted from last (weakly: a door outlives the loops it served).
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], _Answers] | None = None
        import asyncio  # here: a process that never calls from async code need not load it

        self._running_loop = asyncio.get_running_loop
        _doors.add(self)

    def submit(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Run ``fn(*args)`` on a worker; the running loop's future of its result."""
        loop = self._running_loop()
        last = self._last
        if last is not None and last[0]() is loop:
            answers = last[1]
        else:
            answers = _answers_for(loop)
            self._last = (weakref.ref(loop), answers)
        fut = loop.create_future()
        item = (answers, fut, contextvars.copy_context(), fn, args)
        with self._lock:
            if self._closed:
                raise RuntimeError(f"plugin '{self.name}' takes no more calls (unloaded)")
            if self._awake:
                # A worker is awake: it takes this call when its own is done, so no parked
                # one is woken for it. Each worker woken is a futex wake, a context switch
                # and two more hand-overs of the GIL (to it and back), where the awake one
                # runs a batch of short calls in one hold of the GIL (bench_routes: 1.3
                # voluntary switches per route request with every call waking a worker,
                # 0.4 with one worker awake). A call that runs long would keep the queue
                # waiting: the loop checks the awake workers are not all in long calls
                # (_unstick).
                self._waiting.append(item)
                if (self._parked or len(self._threads) < self.width) and \
                        loop not in self._checks:
                    self._check_later(loop)
            elif self._parked:
                self._awake += 1
                worker = self._parked.pop()
                worker.item = item
                worker.wake.release()
            else:  # (none awake, none parked: no thread yet, or all ended)
                self._start(item)
        return fut

    def withdraw(self, fut: asyncio.Future[Any]) -> bool:
        """Take back the call of :meth:`submit`'s ``fut`` if no worker has taken it yet: True,
        and it never runs (``fut`` cancelled); False when one has (it runs on to its end,
        its answer dropped if ``fut`` is done) or it is not queued here."""
        with self._lock:
            for i, item in enumerate(self._waiting):
                if item[1] is fut:
                    del self._waiting[i]
                    break
            else:
                return False
        fut.cancel()
        return True

    def _start(self, item: tuple[Any, ...]) -> None:
        # (under _lock)
        self._awake += 1
        worker = _Worker()
        self._workers.append(worker)
        thread = threading.Thread(target=self._work, args=([item], worker), daemon=True,
                                  name=f"omnicore-plugin-{self.name}_{len(self._threads)}")
        self._threads.append(thread)
        thread.start()

    def _check_later(self, loop: asyncio.AbstractEventLoop) -> None:
        # (under _lock)
        self._checks.add(loop)
        loop.call_later(UNSTICK_S, self._unstick, loop)

    def _unstick(self, loop: asyncio.AbstractEventLoop) -> None:
        """On the loop, :data:`UNSTICK_S` after a call queued behind an awake worker: if
        every awake worker is in a call that began at least that long ago (long calls: their
        guests let the GIL go), one more worker takes the next queued call, up to ``width``;
        checked again while calls are queued. Not when one is between calls or waiting for
        the GIL to begin one: it takes the queued calls once the GIL is its (a worker woken
        then would wait for the GIL beside it; the loop's thread holds it for up to
        ``sys.getswitchinterval()`` at a time). The check runs on a loop that queued a
        call, each loop its own: a loop whose thread blocks meanwhile (a caller's bug: nothing
        of it runs) adds no worker, and the calls queued wait for the long ones to end (by
        their deadline at the latest) unless another loop's check, which goes on whatever
        this one does, adds one. A thread of the
        door's own would check without a loop, at a wake-up (and the GIL) per check."""
        with self._lock:
            self._checks.discard(loop)
            if self._closed or not self._waiting:
                return
            now = time.monotonic()
            parked = self._parked
            if all(w.since is not None and now - w.since >= UNSTICK_S
                   for w in self._workers if w not in parked):
                if parked:
                    self._awake += 1
                    worker = parked.pop()
                    worker.item = self._waiting.popleft()
                    worker.wake.release()
                elif len(self._threads) < self.width:
                    self._start(self._waiting.popleft())
            # Again while a worker could still be added (none can be once all are awake:
            # each takes from the queue before it parks).
            if self._waiting and (self._parked or len(self._threads) < self.width):
                self._check_later(loop)

    def _work(self, first: list[tuple[Any, ...]], me: _Worker) -> None:
        # (Boxed: a thread keeps its args while it runs, and this one runs for the door's
        # life; its first call, future and loop with it, would stay.)
        item: tuple[Any, ...] | None = first.pop()
        lock, waiting, parked = self._lock, self._waiting, self._parked
        monotonic = time.monotonic
        while item is not None:
            answers, fut, context, fn, args = item
            out: Any = None
            failure: BaseException | None = None
            if not fut.done():  # else cancelled before it began: it never runs
                me.since = monotonic()
                try:
                    out = context.run(fn, *args)
                except BaseException as exc:
                    failure = exc
                me.since = None
            # The next call first (a queued one), or parked before the answer goes: the call
            # its answer lets the loop make next finds this worker, not a new thread.
            park = False
            with lock:
                if waiting:
                    item = waiting.popleft()
                elif self._closed:
                    item = None
                    self._awake -= 1
                else:
                    park = True
                    parked.append(me)
                    self._awake -= 1
            if not fut.done():
                answers.put(fut, out, failure)
            del answers, fut, context, fn, args, out, failure
            if park:  # holding nothing of the call (its loop, its data) while parked
                item = None
                me.wake.acquire()
                item, me.item = me.item, None

    def shutdown(self, wait: bool = True) -> None:
        """Take no more calls; the queued ones still run (a removed plugin's fail with
        PluginNotFound). ``wait``: until every worker has ended."""
        with self._lock:
            self._closed = True
            for worker in self._parked:
                worker.item = None
                worker.wake.release()
            self._parked.clear()
            threads = list(self._threads)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()


def _at_exit() -> None:  # as concurrent.futures does: running calls end before Python does
    for door in list(_doors):
        door.shutdown(wait=True)


threading._register_atexit(_at_exit)  # type: ignore[attr-defined]
