"""A component plugin bound to its limits, with a pool of instances to call with JSON.

The same limits model as core modules (specs/host.md "Limits"): each instance lives in its
own store with the memory limit (the store's limiter), an epoch deadline per call, fuel when
the engine meters it, and an instance that failed is discarded and replaced. wasmtime-py
reports every failure as one ``WasmtimeError``; its facts come from the store's state (the
epoch ticks the call ran, the fuel left, the memory limiter's record of a refused growth, the
exit status, the host function that refused) and :mod:`omnicore.sandbox.failures` gives the
verdict every runtime gives.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from ctypes import byref
from pathlib import Path
from typing import Any

import wasmtime

from omnicore.errors import (
    GuestError,
    HandlerNotFound,
    InvalidModule,
    MemoryLimitExceeded,
    PluginCallError,
)
from omnicore.sandbox._wasmtime import CAPI, component_func, context_of
from omnicore.sandbox.capability import CapabilityRegistry, PluginContext
from omnicore.sandbox.component.arguments import parse_arguments
from omnicore.sandbox.component.canonabi import _CanonTrap
from omnicore.sandbox.component.compiled import ComponentModule
from omnicore.sandbox.component.descriptors import DescriptorWatch
from omnicore.sandbox.component.files import GrantedDirs
from omnicore.sandbox.component.flatcall import (
    COMPCALL,
    FlatCall,
    _CallFailed,
    answer_json,
    uses_memory,
)
from omnicore.sandbox.component.hostcalls import (
    _CALL,
    HANDLER_CALL,
    enter,
    leave,
    take_refusal,
)
from omnicore.sandbox.component.instance import Instance
from omnicore.sandbox.component.linking import link
from omnicore.sandbox.component.memory import Limiter, limiting, sole_memory
from omnicore.sandbox.component.output import ComponentOutput
from omnicore.sandbox.component.values import delete, lift_bytes
from omnicore.sandbox.component.world import Function
from omnicore.sandbox.deadline import arm
from omnicore.sandbox.engine import SandboxEngine
from omnicore.sandbox.failures import Facts, classify, code_of
from omnicore.sandbox.fastcall import GuestFailure, error_failure
from omnicore.sandbox.limits import Limits
from omnicore.sandbox.pluginlog import PluginLog
from omnicore.sandbox.pool import PooledRuntime
from omnicore.sandbox.wasi_fd import MAX_OPEN, parse_dirs

__all__ = ["HANDLER_SIGNATURE", "MAX_CORE_INSTANCES", "MAX_MEMORIES", "ComponentRuntime"]

#: ``omnicore:plugin/handler.call`` as :mod:`.world` renders it.
HANDLER_SIGNATURE = ("func(handler: string, input: list<u8>) -> result<list<u8>, string>")
#: As ABI v1 (specs/abi.md §2.2): a longer guest error message is cut.
MAX_ERROR_MESSAGE = 4096

#: Linear memories per instance. The store's limit applies to each one, so a component holds
#: at most this many times ``max_memory_bytes``; toolchains use one or two (the program's and
#: an adapter's; componentize-qjs: 2).
MAX_MEMORIES = 4
#: Core instances per component instance (componentize-qjs: 9; dynamically linked Python
#: components one per shared library). Each costs host memory outside the limits above.
MAX_CORE_INSTANCES = 256



class ComponentRuntime(PooledRuntime[Instance]):
    """Instances of one component. :meth:`call` takes and returns JSON (specs/components.md).

    Raises InvalidModule for an import nothing supplies, PluginLoadError when the first
    instance cannot start. Thread-safe; up to ``limits.pool_size`` calls run in parallel.
    """

    def __init__(self, engine: SandboxEngine, module: ComponentModule,
                 limits: Limits | None = None, log: PluginLog | None = None, *,
                 registry: CapabilityRegistry | None = None,
                 grants: Mapping[str, Mapping[str, Any]] | Iterable[str] | None = None,
                 config: Mapping[str, Any] | None = None,
                 data_dir: Path | None = None) -> None:
        self.engine = engine
        self.module = module
        self._attach(module.name, limits, log)
        world = module.world
        assert world is not None
        self._functions = world.functions
        self.config: Mapping[str, Any] = dict(config or {})
        registry = registry if registry is not None else CapabilityRegistry()
        linked = link(engine, module, registry, grants, PluginContext(
            self.name, {}, self.config, self.log, data_dir, module.handlers))
        self.granted = linked.granted
        grant_map = linked.grants
        self._http_linked = linked.http_linked
        self._linker = linker = linked.linker
        self._call_fn = self._handler_function(module)
        #: Exports the host calls with its own canonical ABI (.canonplan), and whether each
        #: needs the instance's memory.
        self._canon = {name: (FlatCall(form), uses_memory(form))
                       for name, form in module.flat.items()}
        #: A plugin component's ``call`` through the same face, bytes in and out (its
        #: ``list<u8>``s the host's bytes, not JSON: .flatcall's ``bytes_out``).
        self._call_flat: FlatCall | None = None
        if self._call_fn is not None and self._call_fn.name in module.flat:
            self._call_flat = FlatCall(module.flat[self._call_fn.name], bytes_out=True)
        #: Those called with JSON in and out in C (every canonical export: .flatcall's
        #: call_json; one without its instance's memory answers NotImplemented).
        #: (Never a handler's name: a plugin component's handlers are called through its
        #: ``call`` export, and the lane is tried first.)
        self._lanes = {name: flat for name, (flat, _m) in self._canon.items()
                       if COMPCALL is not None
                       and (flat.plain is not None or flat.plan is not None)
                       and not (self._call_fn is not None and name in module.handlers)}
        #: Whether the component can write to stdout/stderr at all: without those imports
        #: there is nothing to take in after a call (two reads of empty pipes saved).
        self._stdio = any(n.startswith(("wasi:cli/stdout", "wasi:cli/stderr"))
                          for n in world.imports)
        # The fs grant's directories: wasi:filesystem preopens of every instance (.files).
        fs = grant_map.get("fs")
        self._dirs = GrantedDirs(self.name, parse_dirs(fs.get("dirs", []), "grant.fs.dirs")
                                 if fs else ())
        try:
            self._dirs.link(linker)
            self._wasi_output = ComponentOutput(self.log)
        except BaseException:
            self._dirs.close()
            raise
        self._ticks = engine.deadline_ticks(self.limits.timeout_ms)
        self._timeout_s = self.limits.timeout_ms / 1000
        #: Descriptors the granted directories may hold (.descriptors): the core-module
        #: bound per instance, and the runtime's own.
        self._max_descriptors = MAX_OPEN * self.limits.pool_size + len(self._dirs.fds)
        self._fuel: int | None = None
        if engine.fuel:
            self._fuel = self.limits.fuel if self.limits.fuel is not None else 2**62
        engine.reaper.watch(self._open_pool(self._new_instance, self._drained,
                                            hollow=engine.hollow))
        #: :meth:`call`'s hot path in one C call (sandbox/_complane.c: the pool's checkout,
        #: the call's arming, the face's call_json, the verdict), where the C component call
        #: path is built and no fuel is metered; it answers NotImplemented, having run
        #: nothing, for whatever it leaves to Python (:meth:`_call_python`).
        self._c_lane = None
        if COMPCALL is not None and self._lanes and self._fuel is None \
                and engine.c_clock is not None:
            self._c_lane = COMPCALL.Lane(
                self._lanes, self._pool, _CALL, engine.c_clock, self.log,
                self._wasi_output if self._stdio else None, leave, self._lane_failed,
                self._lane_too_large, self.limits.max_input_bytes,
                self.limits.max_output_bytes, self._timeout_s, self._call_python)

    @property
    def _c_lane(self) -> Any:
        return self._lane_in_c

    @_c_lane.setter
    def _c_lane(self, lane: Any) -> None:
        # With a lane, call() itself is its serve() (no Python frame around the C call);
        # without one (none built, or a test taking the Python path), the method.
        self._lane_in_c = lane
        if lane is None:
            self.__dict__.pop("call", None)
        else:
            self.call = lane.serve  # type: ignore[method-assign]

    def _drained(self) -> None:
        # What all instances shared: the output pipes and the granted directories.
        self._wasi_output.close()
        self._dirs.close()

    @property
    def handlers(self) -> tuple[str, ...]:
        """The callable export names."""
        return self.module.handlers

    def _handler_function(self, module: ComponentModule) -> Function | None:
        """The exported ``call`` of an omnicore plugin component (its handlers are called
        with bytes), or None for any other component."""
        if module.handler_interface is None:
            return None
        fn = self._functions.get(f"{module.handler_interface}#{HANDLER_CALL}")
        if fn is None or fn.signature != HANDLER_SIGNATURE:
            raise InvalidModule(
                f"plugin {self.name!r} exports {module.handler_interface} without "
                f"{HANDLER_CALL}: {HANDLER_SIGNATURE}; rebuild against sdk/wit/plugin.wit",
                plugin=self.name)
        return fn

    def _new_instance(self, handler: str | None) -> Instance:
        lim = self.limits
        store = wasmtime.Store(self.engine.components)
        # The memory limit is kept by the limiter the store's memories are made with
        # (.memory), which records a refusal; wasmtime's own limiter keeps the rest.
        limiter = Limiter(lim.max_memory_bytes)
        store.set_limits(table_elements=lim.max_table_elements,
                         memories=MAX_MEMORIES, tables=MAX_MEMORIES * lim.max_tables,
                         instances=MAX_CORE_INSTANCES)
        wasi = self._wasi_output.config()
        self._dirs.add_to(wasi)
        store.set_wasi(wasi)
        if self._http_linked:
            store.set_wasi_http()
        watch = None
        if self._dirs.fds:
            watch = DescriptorWatch(self.engine, self._dirs.fds, self._max_descriptors,
                                    self._ticks)
            watch.install(store)
            watch.arm(store)
        else:
            arm(self.engine, store, self._ticks)
        if self._fuel is not None:
            store.set_fuel(self._fuel)
        start = self.engine.epoch
        # A start function's host calls are bounded like a handler's (specs/abi.md §2.1).
        enter(time.monotonic() + lim.timeout_ms / 1000)
        try:
            with limiting(limiter):
                instance = self._linker.instantiate(store, self.module.compiled)
        except wasmtime.WasmtimeError as exc:
            error = self._classify(store, limiter, handler or "(instantiate)", start,
                                   GuestFailure(str(exc)), watch=watch, instantiating=True)
            store.close()
            raise error from None
        memory = sole_memory(limiter) if self.module.flat else None
        return Instance(store, instance, self.module.compiled, limiter, watch, memory)

    def _classify(self, store: wasmtime.Store, limiter: Limiter, export: str, start: int,
                  failure: GuestFailure, mark: int | None = None,
                  watch: DescriptorWatch | None = None,
                  instantiating: bool = False) -> PluginCallError:
        # Toolchains print why before they trap (a JS exception, a Rust panic): carry it.
        said = tuple(ln.message.strip() for ln in self.log.since(mark)
                     if ln.level in ("warn", "error") and ln.message.strip()) \
            if mark is not None else ()
        lim = self.limits
        over = None
        if watch is not None and watch.over:
            over = ("open_descriptors", self._max_descriptors,
                    f"its instances held more than {self._max_descriptors} descriptors open "
                    f"in its granted directories ({MAX_OPEN} for each of limits.pool_size "
                    f"{lim.pool_size}, and the directories)")
        return classify(self.name, export, lim, Facts(
            # wasmtime-py reports a component's trap as text only: its code is read from it.
            message=failure.message, code=code_of(failure.message),
            exit_status=failure.exit_status, logged=said, limit=over,
            # A deadline trap comes at least ``ticks`` epochs after arming; the mirror may
            # lag the engine by one, and a guest trapping on its own that late was at its
            # deadline.
            deadline=self.engine.epoch - start >= self._ticks - 1,
            fuel_out=self._fuel is not None and store.get_fuel() == 0,
            # The limiter records a refused growth (.memory): exact, no size heuristics.
            memory_refused=limiter.refused, instantiating=instantiating,
            refusal=take_refusal()), kind="export")

    def call(self, handler: str, data: bytes) -> bytes:
        """Call export ``handler`` with ``data``, a JSON array of its arguments; return the
        result as JSON (``null`` for a function without one).

        Raises HandlerNotFound, InvalidInput (before anything runs), InputTooLarge,
        OutputTooLarge, Trap, DeadlineExceeded, FuelExhausted, MemoryLimitExceeded.
        """
        c = self._c_lane
        if c is not None:
            done: bytes = c.call(handler, data)
            if done is not NotImplemented:
                return done
        return self._call_python(handler, data)

    def _call_python(self, handler: str, data: bytes) -> bytes:
        """:meth:`call` for what the C lane leaves to Python (or without the lane: metered
        calls, the Python call path): the arguments parsed here, the call through the
        export's face (.flatcall: the C face where it is built, which arms the deadline) or
        wasmtime's value API."""
        if self._call_fn is not None and handler in self.module.handlers:
            return self._call_handler(self._call_fn, handler, bytes(data))
        fn = self._functions.get(handler)
        if fn is None:
            raise HandlerNotFound(
                f"plugin {self.name!r} has no export {handler!r}; its exports: "
                f"{', '.join(self._functions) or '(none)'}", plugin=self.name,
                handler=handler)
        args = parse_arguments(self.name, fn, bytes(data), self.limits)
        inst = self._pool.acquire(handler)
        keep = False
        try:
            out = self._invoke(inst, fn, args)
            keep = True
        finally:
            self._release(inst, keep)
        if len(out) > self.limits.max_output_bytes:
            raise self.limits.output_too_large(
                len(out), f"plugin {self.name!r} export {handler!r}", self.name, handler)
        return out

    def _call_handler(self, fn: Function, handler: str, data: bytes) -> bytes:
        """A handler of an omnicore plugin component: ``call(handler, data)``, bytes in and
        out as for ABI v1; the guest's ``err`` is a GuestError (the instance is kept)."""
        lim = self.limits
        if len(data) > lim.max_input_bytes:
            raise lim.input_too_large(
                len(data), f"plugin {self.name!r} handler {handler!r}", self.name, handler)
        inst = self._pool.acquire(handler)
        keep = False
        try:
            ok, out = self._invoke_handler(inst, fn, handler, data)
            # A guest that met the limit as an error of its own (CPython's MemoryError)
            # failed because of the limit too; its memory stays at the limit, so the
            # instance is replaced as after a trap.
            refused = not ok and inst.limiter.refused
            keep = not refused
        finally:
            self._release(inst, keep)
        if not ok:
            msg = out.decode("utf-8", "replace")[:MAX_ERROR_MESSAGE]
            if refused:
                raise MemoryLimitExceeded(
                    f"plugin {self.name!r} handler {handler!r} failed after its memory was "
                    f"refused growth past limits.max_memory_bytes ({lim.max_memory_bytes}): "
                    f"{msg}; the instance was discarded", plugin=self.name, handler=handler,
                    limit="max_memory_bytes", value=lim.max_memory_bytes)
            raise GuestError(f"plugin {self.name!r} handler {handler!r} failed: {msg}",
                             plugin=self.name, handler=handler, guest_message=msg)
        if len(out) > lim.max_output_bytes:
            raise lim.output_too_large(
                len(out), f"plugin {self.name!r} handler {handler!r}", self.name, handler)
        return out

    def _invoke(self, inst: Instance, fn: Function, args: list[Any]) -> bytes:
        canon = self._canon.get(fn.name)
        if canon is not None and (inst.memory is not None or not canon[1]):
            return canon[0].dumps(self._invoke_canon(inst, fn, canon[0], args))
        return answer_json(self._invoke_raw(inst, fn, fn.name, args))

    def _invoke_handler(self, inst: Instance, fn: Function, handler: str,
                        data: bytes) -> tuple[bool, bytes]:
        """``call(handler, data)`` of a plugin component: (ok, the answer's bytes). Through
        the export's face as every canonical export (its bytes never JSON), or wasmtime's
        value API where it has none (no face, several memories)."""
        flat = self._call_flat
        if flat is None or inst.memory is None:
            answer: tuple[bool, bytes] = self._invoke_raw(inst, fn, handler, [handler, data],
                                                          handler_bytes=True)
            return answer
        out = self._invoke_canon(inst, fn, flat, [handler, data], handler)
        ok = "ok" in out
        return ok, (out["ok"] if ok else out["err"].encode())

    def _arm(self, inst: Instance, deadline: bool = True) -> tuple[int, int]:
        """Arm the deadline (unless a C face arms it: ``deadline`` False), fuel and memory
        record of a call; (epoch, log mark) at its start."""
        store = inst.store
        if inst.watch is not None:
            inst.watch.arm(store)
        elif deadline:
            arm(self.engine, store, self._ticks)
        if self._fuel is not None:
            store.set_fuel(self._fuel)
        inst.limiter.refused = False  # (Limiter.arm, inline: every call passes here)
        start = self.engine.epoch
        mark = self.log.written
        enter(time.monotonic() + self._timeout_s)
        return start, mark

    def _face_epoch(self, inst: Instance) -> int | None:
        """What a C face is told to arm with: 0, arm through the C door from the engine's
        clock when it moved (sandbox/_deadline.h), or None when a descriptor watch arms the
        store (it did, in :meth:`_arm`)."""
        return None if inst.watch is not None else 0

    def _check_descriptors(self, inst: Instance, label: str, start: int) -> None:
        """The verdict of a call after which the instance holds too many descriptors."""
        if inst.watch is not None and inst.watch.exceeded():
            raise self._verdict(inst, label, start, "too many descriptors")

    def _verdict(self, inst: Instance, label: str, start: int, cause: Any,
                 mark: int | None = None) -> PluginCallError:
        """The verdict of a call on ``inst`` that failed, every lane's (the C lane's through
        :meth:`_lane_failed`): ``cause`` is wasmtime's error (its address, or the
        _CallFailed holding it), a trap of the host's canonical ABI (_CanonTrap) or a trap's
        words; ``mark``: the log's mark at the call's start (what the guest said before)."""
        failure = error_failure(cause.error) if isinstance(cause, _CallFailed) \
            else GuestFailure(cause) if isinstance(cause, str) \
            else GuestFailure(str(cause)) if isinstance(cause, Exception) \
            else error_failure(cause)
        return self._classify(inst.store, inst.limiter, label, start, failure, mark=mark,
                              watch=inst.watch)

    def _lane_failed(self, inst: Instance, name: str, start: int, mark: int,
                     exc: Exception) -> None:
        """The C lane's call of ``name`` failed with ``exc``: raise the verdict, discard
        ``inst`` (as after any failed call)."""
        try:
            raise self._verdict(inst, name, start, exc, mark) from None
        finally:
            self._pool.release(inst, False)

    def _lane_too_large(self, out: bytes, handler: str) -> None:
        raise self.limits.output_too_large(
            len(out), f"plugin {self.name!r} export {handler!r}", self.name, handler)

    def _invoke_canon(self, inst: Instance, fn: Function, flat: FlatCall,
                      args: list[Any], label: str | None = None) -> Any:
        """``fn`` through its canonical face (.flatcall): the JSON value of its result (a
        handler's, ``label`` its name: bytes for its ``list<u8>``); a failure gets the
        verdict wasmtime's value API would."""
        # A handler's bytes are bound apart from the export's JSON (one face, two FlatCalls).
        key = fn.name if label is None else f"{fn.name} (bytes)"
        label = fn.name if label is None else label
        bound = inst.canon.get(key) or inst.bound(key, flat, self._ticks, self.engine.c_clock)
        c = bound.c is not None
        start, mark = self._arm(inst, not c)
        try:
            try:
                # The C face arms the deadline when the epoch moved (a watch arms its own).
                answer = flat.call_c(bound, args, self._face_epoch(inst)) \
                    if c else flat.call(bound, args)
            finally:
                if self._stdio:
                    self._wasi_output.catch_up()
                leave()
        except (_CallFailed, _CanonTrap) as exc:
            raise self._verdict(inst, label, start, exc, mark) from None
        self._check_descriptors(inst, label, start)
        return answer

    def _invoke_raw(self, inst: Instance, fn: Function, label: str, args: list[Any],
                    handler_bytes: bool = False) -> Any:
        """``fn`` through wasmtime's value API (what no face carries: resources, streams, a
        component with several memories): the JSON value of its result; a handler's
        ``call`` (``handler_bytes``): (ok, bytes)."""
        func = inst.export(fn.name, fn.path)
        store = inst.store
        n = len(args)
        params = (CAPI.wasmtime_component_val_t * max(n, 1))()
        lowered = 0
        result = CAPI.wasmtime_component_val_t()
        has_result = fn.result is not None
        try:
            for i, ((_, codec), value) in enumerate(zip(fn.params, args, strict=True)):
                codec.lower(value, params[i])
                lowered += 1
            start, mark = self._arm(inst)
            error = CAPI.wasmtime_component_func_call(
                component_func(func), context_of(store), params, n,
                byref(result) if has_result else None, 1 if has_result else 0)
            # What the guest printed is in the log when the call returns (and in its error).
            self._wasi_output.catch_up()
        finally:
            for i in range(lowered):
                delete(params[i])
            leave()  # what host functions left for the call's end (a transaction)
        if error:
            raise self._verdict(inst, label, start, error, mark) from None
        answer: Any = None
        if fn.result is not None:
            try:
                if handler_bytes:  # result<list<u8>, string>: (ok, bytes)
                    ok = bool(result.of.result.is_ok)
                    payload = result.of.result.val.contents
                    answer = (ok, lift_bytes(payload) if ok else
                              fn.result.lift(result)["err"].encode())
                else:
                    answer = fn.result.lift(result)
            finally:
                delete(result)
        error = CAPI.wasmtime_component_func_post_return(component_func(func), context_of(store))
        if error:
            raise self._verdict(inst, label, start, error) from None
        self._check_descriptors(inst, label, start)
        return answer
