"""One wasmtime engine per app: epoch ticker thread, optional fuel, compiled-module cache."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import weakref
from collections.abc import Callable, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import wasmtime

from omnicore.errors import ConfigError
from omnicore.sandbox import _wasmtime as engine_api
from omnicore.sandbox import fastcall, modcache, modkey, wasmbin
from omnicore.sandbox._wasmtime import SharedModule
from omnicore.sandbox.idle import IdleReaper
from omnicore.sandbox.modkey import ModuleKey

if TYPE_CHECKING:
    from omnicore.config.schema import SandboxConfig

__all__ = ["SandboxEngine", "refuse_indescribable"]

_log = logging.getLogger("omnicore.sandbox")
T = TypeVar("T")


def refuse_indescribable(wasm: bytes) -> None:
    """Raise wasmtime.WasmtimeError (one line) for a core module with an import or export of
    a type wasmtime's C API aborts the process on when asked to describe it (a v128, a Wasm
    GC or typed function reference): read from the bytes, before wasmtime compiles it, so no
    caller ever reads such a signature through wasmtime-py (specs/security.md "Wasm GC").
    Bytes this cannot read are refused too: what they declare is unknown."""
    if wasmbin.is_component(wasm):
        return
    try:
        where = wasmbin.indescribable_signature(wasm)
    except wasmbin.WasmFormatError as exc:
        raise wasmtime.WasmtimeError(f"failed to parse WebAssembly module: {exc}") from None
    if where is not None:
        raise wasmtime.WasmtimeError(
            f"{where} has a v128 or a GC/typed reference (other than funcref and externref) "
            "in its type; imports and exports take numbers, funcref and externref only "
            "(Wasm GC is fine inside the module: specs/abi.md §1.5)")


class SandboxEngine:
    """The shared compiler/runtime for every plugin of one app.

    * epoch interruption is always on; a daemon thread bumps the epoch every
      ``epoch_tick_ms`` so per-call deadlines (``Limits.timeout_ms``) are enforced with that
      granularity;
    * ``fuel=True`` enables instruction metering (``Limits.fuel`` then applies per call);
    * ``cache_dir`` holds compiled modules keyed by sha256 + engine config + wasmtime version,
      each authenticated by ``module_key`` before it is loaded (:mod:`.modcache`; the key,
      or what gives it on first use, defaults to the user's: :func:`.modkey.user_key`); a
      directory others can write is refused (ConfigError);
    * ``pooling=True`` uses wasmtime's pooling instance allocator (fast fresh instances),
      with copy-on-write memory images: what ``limits.isolation: per-call`` wants;
    * one compiled module per distinct wasm (by sha256) while any plugin uses it: copies of
      the same bytes share code, and loading the second costs no deserialisation;
    * :attr:`reaper` frees instances idle past their plugin's ``limits.idle_timeout_ms``;
    * ``baseline=True`` compiles with Winch, wasmtime's baseline compiler: about 8x less CPU
      than Cranelift (the 16 demo plugins: 1.6 s against 12.6 s) for slower code. A host
      starting on an empty cache serves from it while Cranelift compiles
      (:mod:`omnicore.plugins.tiers`). Same limits, deadlines and traps: those are the
      runtime's, not the compiler's;
    * ``hollow=True`` compiles every plugin as :func:`.wasmbin.hollow` makes it (bodies that
      trap, no start): it links as the plugin would and runs nothing, and no instance is
      started at load (:mod:`.pool`). What ``omnicore inspect`` asks would it load, without
      compiling its code (issue 63: a Python component's took 5.6 s on Winch). No cache.
    """

    def __init__(self, cache_dir: Path | None = None, epoch_tick_ms: int = 10,
                 fuel: bool = False, *, pooling: bool = False, baseline: bool = False,
                 module_key: ModuleKey | Callable[[], ModuleKey | None] | None = None,
                 baked_dir: Path | None = None, hollow: bool = False) -> None:
        if not isinstance(epoch_tick_ms, int) or epoch_tick_ms < 1:
            raise ValueError(f"epoch_tick_ms must be a positive integer, got {epoch_tick_ms!r}")
        if hollow and (cache_dir is not None or baked_dir is not None):
            raise ValueError("a hollow engine keeps no compiled modules (its code is not the "
                             "plugin's): no cache_dir or baked_dir")
        self.hollow = hollow
        self.epoch_tick_ms = epoch_tick_ms
        self.fuel = fuel
        self.pooling = pooling
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self._module_key: ModuleKey | Callable[[], ModuleKey | None] | None = \
            module_key if module_key is not None else modkey.user_key
        self._module_key_lock = threading.Lock()
        # A container image's read-only compiled modules, with their own key (modkey.baked_key).
        self.baked_dir = Path(baked_dir) if baked_dir is not None else None
        self._baked_key: ModuleKey | None = None
        if self.baked_dir is not None:
            try:
                self._baked_key = modkey.baked_key(self.baked_dir)
            except (ConfigError, OSError) as exc:
                _log.warning("the baked compiled modules in %s are not used: %s",
                             self.baked_dir, exc)
        if self.cache_dir is not None:
            modcache.check_cache_dir(self.cache_dir, create=True)
        cfg = wasmtime.Config()
        cfg.epoch_interruption = True
        cfg.consume_fuel = fuel
        # The fast path caches each memory's base address; it must never move.
        cfg.memory_may_move = False
        # wasmtime's C API aborts the whole process when asked for the kind of a v128 or a
        # GC/typed reference value type (found by tests/sandbox/test_smith.py), and reading
        # import/export signatures needs exactly that. SIMD is on for function bodies (real
        # plugins' allocators use it) and so are Wasm GC and typed function references
        # (Kotlin/Wasm needs both): :meth:`compile` refuses, from the bytes and before
        # wasmtime is asked, a module with such a type in an import or export (specs/
        # security.md "Wasm GC"). One engine for both kinds: GC on changed neither the 100 B
        # call nor compile time of non-GC modules (measured: 1.38 vs 1.07 µs median,
        # 2.5 s vs 2.5 s for the Go counter; noise), and a second engine would need its
        # own ticker, pool and cache key. The exception proposal stays off (Kotlin builds
        # with -Xwasm-use-traps-instead-of-exceptions). Winch (``baseline``) has no GC:
        # wasmtime aborts the process making such an engine, so it keeps both off and a GC
        # module is refused there by validation (a Cranelift engine runs it).
        cfg.wasm_simd = True
        cfg.wasm_relaxed_simd = False
        cfg.wasm_gc = not baseline
        cfg.wasm_function_references = not baseline
        cfg.wasm_exceptions = False
        # One private 32-bit memory per instance: what the fast path and limits assume.
        cfg.wasm_threads = False
        cfg.wasm_memory64 = False
        cfg.wasm_multi_memory = False
        # Linear memory starts as a copy-on-write mapping of the module's data image (the
        # default on Linux, said here because per-call isolation's price depends on it).
        cfg.memory_init_cow = True
        if pooling:
            from omnicore.sandbox.pooling import enable_pooling

            enable_pooling(cfg)
        self.baseline = baseline
        if baseline:
            engine_api.use_winch(cfg)
        self.wasmtime = wasmtime.Engine(cfg)
        # What changes the compiled code, and only that: the pooling allocator is how
        # instances get their memory, and wasmtime compiles the same bytes with it or without
        # (tests/sandbox/test_engine.py), so switching it does not recompile every plugin.
        self.config_key = hashlib.sha256(
            f"wasmtime={engine_api.FOUND};epoch=1;fuel={int(fuel)};may_move=0;simd=1;"
            f"gc={0 if baseline else 1};exceptions=0;threads=0;mem64=0;multimem=0"
            f"{';winch=1' if baseline else ''}".encode()).hexdigest()[:16]
        # Wasm GC modules on a Winch engine get a Cranelift one, made on first use (:attr:`gc`).
        self._gc: SandboxEngine | None = None
        self._gc_lock = threading.Lock()
        # Components get an engine of their own, made on first use (see :attr:`components`).
        self._components: wasmtime.Engine | None = None
        self._components_lock = threading.Lock()
        self._epoch = 0
        self._epoch_lock = threading.Lock()
        #: The longest deadline handed out, in ticks: what :meth:`interrupt` must pass.
        self._longest_ticks = 0
        #: Compiled modules by sha256 (components by "component:" and theirs), while something
        #: holds them (see :meth:`shared`); a hollow engine, which lives for one command and
        #: compiles in a moment what it compiles, keeps them (inspect's two looks at a file).
        self._modules: MutableMapping[str, Any] = \
            {} if hollow else weakref.WeakValueDictionary()
        self._modules_lock = threading.Lock()
        #: Frees idle plugin instances (``limits.idle_timeout_ms``).
        self.reaper = IdleReaper()
        self._stop = threading.Event()
        #: The C call path's ticker (a C thread, sandbox/_epoch.c), or None: a Python thread
        #: ticks. With the C one, short plugin calls keep the GIL (specs/host.md).
        self.clock = fastcall.new_ticker(epoch_tick_ms)
        #: The C ticker's clock (a capsule) for the C paths' door (sandbox/_deadline.h), or
        #: None.
        self.c_clock = self.clock.clock if self.clock is not None else None
        if self.clock is not None:
            self.clock.add(fastcall.address_of(self.wasmtime), self.wasmtime)
            self._ticker: threading.Thread | None = None
        else:
            #: When the Python ticker's next tick is due (it ticks by the clock).
            self._due = time.monotonic() + epoch_tick_ms / 1000
            self._ticker = threading.Thread(target=self._tick, name="omnicore-epoch",
                                            daemon=True)
            self._ticker.start()

    @property
    def epoch(self) -> int:
        """The engine's epoch as counted here: never behind the engine with the C ticker, at
        most a tick behind with the Python one. Lets a call skip re-arming its deadline when no
        tick happened since the last arm (the deadline would be identical)."""
        clock = self.clock
        return self._epoch if clock is None else int(clock.epoch)

    def _tick(self) -> None:
        # Ticks follow the clock, not the wake-ups: a ticker woken late (a loaded machine, a
        # busy GIL) adds every period that passed, so a deadline counted in ticks stretches by
        # at most the last late wake-up instead of by every one of them.
        period = self.epoch_tick_ms / 1000
        engine = self.wasmtime
        while not self._stop.wait(max(0.0, self._due - time.monotonic())):
            passed = 1 + max(0, int((time.monotonic() - self._due) / period))
            components = self._components
            with self._epoch_lock:
                for _ in range(passed):
                    engine.increment_epoch()
                    if components is not None:
                        components.increment_epoch()
                self._epoch += passed
                self._due += passed * period

    def epoch_and_owed(self) -> tuple[int, int]:
        """:attr:`epoch`, and the ticks the ticker owes the engine now: what the deadline's
        door (:func:`omnicore.sandbox.deadline.arm`, the only caller) arms from. A ticker
        that runs late adds every period it missed when it wakes, so a deadline armed
        meanwhile counts them too. Either ticker runs late: the Python one starved of the GIL
        (seen: 12 ms of a 300 ms deadline, with six threads looping on host calls), the C one
        descheduled on a loaded machine (seen: 22 ms of a 200 ms deadline, on a 2-core CI
        machine). The C ticker's reading is the C door's (``sandbox/_deadline.h``)."""
        clock = self.clock
        if clock is not None:
            epoch, owed = clock.epoch_and_owed()
            return int(epoch), int(owed)
        with self._epoch_lock:
            late = time.monotonic() - self._due
            return self._epoch, (0 if late < 0 else 1 + int(late * 1000 / self.epoch_tick_ms))

    @property
    def components(self) -> wasmtime.Engine:
        """The engine components compile and run in, ticked with the core one.

        Multi-memory is on in it: the Canonical ABI adapters wasmtime generates for a
        component use several memories, and with it off wasmtime aborts the whole process
        while compiling one. The core engine keeps it off (the fast path assumes one memory).
        """
        if self._components is None:
            with self._components_lock:
                if self._components is None:
                    cfg = wasmtime.Config()
                    cfg.epoch_interruption = True
                    cfg.consume_fuel = self.fuel
                    cfg.memory_may_move = False
                    cfg.wasm_gc = False
                    cfg.wasm_function_references = False
                    cfg.wasm_exceptions = False
                    cfg.wasm_threads = False
                    cfg.wasm_multi_memory = True
                    cfg.wasm_component_model = True
                    # Linear memories are made by the host (component/memory.py: the memory
                    # limiter records a refused growth). wasmtime maps initial data
                    # copy-on-write only into memories it made itself, so that is off.
                    from omnicore.sandbox.component.memory import install

                    engine_api.set_memory_init_cow(cfg, False)
                    install(cfg)
                    if self.baseline:
                        engine_api.use_winch(cfg)
                    engine = wasmtime.Engine(cfg)
                    if self.clock is not None:
                        self.clock.add(fastcall.address_of(engine), engine)
                    self._components = engine
        return self._components

    @property
    def gc(self) -> SandboxEngine:
        """The engine Wasm GC modules compile and run on: this one, or on Winch (which has no
        GC) a Cranelift engine with the same settings, made on first use, interrupted and
        closed with this one (its own ticker keeps its deadlines)."""
        if not self.baseline:
            return self
        with self._gc_lock:
            if self._gc is None:
                self._gc = SandboxEngine(self.cache_dir, self.epoch_tick_ms, self.fuel,
                                         pooling=self.pooling, module_key=self._module_key,
                                         baked_dir=self.baked_dir, hollow=self.hollow)
            return self._gc

    def deadline_ticks(self, timeout_ms: int) -> int:
        """Epoch ticks for a deadline of ``timeout_ms``: rounded up, plus one for the partial
        current tick and one for :attr:`epoch` lagging the engine by a tick."""
        ticks = -(-timeout_ms // self.epoch_tick_ms) + 2
        self._longest_ticks = max(self._longest_ticks, ticks)
        return ticks

    def interrupt(self) -> None:
        """End every call running on this engine now, as its deadline would (the call fails
        with DeadlineExceeded and its instance is discarded); later calls are not affected.

        For a stop whose grace is over. The epoch is the only thing a running guest checks,
        and it is engine-wide: moving it past the longest deadline handed out reaches every
        running call; the mirrored :attr:`epoch` moves with it, so every later call re-arms
        its deadline from the new epoch.
        """
        if self._gc is not None:
            self._gc.interrupt()
        if self.clock is not None:
            self.clock.bump(self._longest_ticks + 1)
            return
        with self._epoch_lock:
            bump = self._longest_ticks + 1
            engines = [self.wasmtime] if self._components is None \
                else [self.wasmtime, self._components]
            for engine in engines:
                for _ in range(bump):
                    engine.increment_epoch()
            self._epoch += bump

    def cache_path(self, sha256: str) -> Path | None:
        """Where the compiled form of the wasm with this digest lives (None: no cache)."""
        if self.cache_dir is None:
            return None
        return self.cache_dir / f"{sha256}-{self.config_key}.cwasm"

    def baked(self, path: Path | None) -> tuple[Path, ModuleKey] | None:
        """The baked entry named like the cache entry ``path`` and its key, when the engine
        has baked modules (``sandbox.baked_dir``): tried before the cache."""
        if path is None or self.baked_dir is None or self._baked_key is None:
            return None
        return self.baked_dir / path.name, self._baked_key

    def has_entry(self, path: Path | None) -> bool:
        """Whether the cache entry ``path``, or its baked twin, is there (not yet checked)."""
        baked = self.baked(path)
        return path is not None and (path.is_file() or (baked is not None
                                                        and baked[0].is_file()))

    @property
    def module_key(self) -> ModuleKey | None:
        """The key that authenticates this engine's cache entries, got on first use; None
        when it cannot be had (logged: every module is then compiled, none read)."""
        held = self._module_key
        if callable(held):
            with self._module_key_lock:
                held = self._module_key
                if callable(held):
                    held = self._module_key = self._usable_key(held)
        return held

    def _usable_key(self, get: Callable[[], ModuleKey | None]) -> ModuleKey | None:
        try:
            key = get()
        except (ConfigError, OSError) as exc:  # a key file refused, or no home to keep one
            _log.warning("no compiled-module key (%s): every module is compiled, none read "
                         "from the cache", exc)
            return None
        if key is None:
            return None
        source = Path(key.source).resolve() if key.source.startswith("/") else None
        if source is not None and self.cache_dir is not None \
                and source.is_relative_to(self.cache_dir.resolve()):
            _log.warning("the compiled-module key %s is inside the module cache %s, where "
                         "whoever writes the cache could read it: not used (every module is "
                         "compiled); move it, or set OMNICORE_MODULE_KEY", source,
                         self.cache_dir)
            return None
        return key

    @classmethod
    def for_config(cls, sandbox: SandboxConfig, fuel: bool = False,
                   module_key: ModuleKey | Callable[[], ModuleKey | None] | None = None
                   ) -> SandboxEngine:
        """An engine with an app's ``sandbox.*`` settings: what its plugin host makes, and what
        ``omnicore precompile`` compiles ahead with (the same module cache keys; the app's
        ``module_key``, :func:`omnicore.app_data.module_key`)."""
        return cls(cache_dir=sandbox.cache_dir, epoch_tick_ms=sandbox.epoch_tick_ms, fuel=fuel,
                   pooling=sandbox.pooling, baseline=sandbox.compiler == "winch",
                   module_key=module_key, baked_dir=sandbox.baked_dir)

    def is_cached(self, sha256: str) -> bool:
        """Whether the cache holds an entry for the wasm with this digest (not yet checked:
        :meth:`compile` verifies it)."""
        return self.has_entry(self.cache_path(sha256))

    def compile(self, wasm: bytes, sha256: str | None = None) -> wasmtime.Module:
        """Compile ``wasm`` (through the on-disk cache when configured), or return the module
        already compiled from the same bytes while it is in use: its code is mapped once.

        Raises wasmtime.WasmtimeError for invalid wasm, and for a core module with an import
        or export of a type wasmtime's C API cannot describe (:func:`refuse_indescribable`).
        A damaged cache entry is logged,
        recompiled and rewritten (:mod:`omnicore.sandbox.modcache`).
        """
        sha256 = sha256 or hashlib.sha256(wasm).hexdigest()
        return self.shared(sha256, lambda: self._checked_compile(wasm, sha256))

    def _checked_compile(self, wasm: bytes, sha256: str) -> SharedModule:
        refuse_indescribable(wasm)
        return self._compile(wasm, sha256)

    def shared(self, key: str, make: Callable[[], T]) -> T:
        """What ``make`` compiles, made once while something holds it: the code of a second
        copy of the same bytes (another plugin name, ``omnicore inspect``'s second look) is
        the first's, mapped once. ``key`` names the bytes and what is compiled of them."""
        with self._modules_lock:
            found = self._modules.get(key)
        if found is not None:
            return cast(T, found)
        made = make()
        with self._modules_lock:
            # Two threads compiling the same bytes at once: both get the first one kept.
            return cast(T, self._modules.setdefault(key, made))

    def code(self, wasm: bytes) -> bytes:
        """What this engine compiles of ``wasm``: the bytes, or on a hollow engine their
        hollow form (every compile of plugin code goes through here). Bytes that form cannot
        read are compiled as they are: wasmtime says what is wrong with them, or compiles
        what that reader does not know (slower, and still never run: :mod:`.pool`)."""
        if not self.hollow:
            return wasm
        # Each core module validated as it is first (wasmtime.WasmtimeError if not): its
        # hollow form would be valid where its code is not.
        engine = self.components if wasmbin.is_component(wasm) else self.wasmtime
        try:
            return wasmbin.hollow(wasm, lambda core: wasmtime.Module.validate(engine, core))
        except wasmbin.WasmFormatError:
            return wasm

    def origin(self, sha256: str, kind: str = "module") -> modcache.Origin:
        """What a cache entry of this engine compiled from the wasm with this digest is made
        from, as its MAC covers it (``kind``: what else changes the code, e.g. a component's
        faces)."""
        return modcache.Origin(sha256, f"{self.config_key}/{kind}")

    def _compile(self, wasm: bytes, sha256: str) -> SharedModule:
        module = modcache.compiled(self.cache_path(sha256), self.origin(sha256), self.wasmtime,
                                   SharedModule,
                                   lambda: SharedModule(self.wasmtime,
                                                        self.code(wasm)).finalized(),
                                   self.module_key, self.baked(self.cache_path(sha256)))
        assert isinstance(module, SharedModule)  # wasmtime-py makes the class it is called on
        return module.finalized()

    def close(self) -> None:
        """Stop the ticker thread. Runtimes created from this engine must be closed first."""
        if self._gc is not None:
            self._gc.close()
        self.reaper.close()
        self._stop.set()
        if self.clock is not None:
            self.clock.close()
        elif self._ticker is not None and self._ticker.is_alive() \
                and self._ticker is not threading.current_thread():
            self._ticker.join(timeout=1)

    def __enter__(self) -> SandboxEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
