"""One test's host: the built-in capabilities' own code, every one granted, over the
in-memory services of :mod:`.services`, and :func:`link`, which defines them in a linker the
way the plugin host does (``sandbox.hostfunc.define_host_function`` around each capability's
``HostFunction``), for all the tests of one program.

A test changes its host as it runs (``testing::set_config``, ``set_secret``): a capability's
state is bound again from the changed context (:meth:`TestHost.rebind`), as a plugin's is
when the operator changes its config or grants. Host functions look the state up in the
running test's host, so one linker serves every test of a program with fresh state each.
"""

from __future__ import annotations

import importlib
import itertools
from collections.abc import Callable
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import wasmtime

from omnicore.sandbox.capability import Capability, HostTrap, PluginContext
from omnicore.sandbox.fastcall import RawInstance
from omnicore.sandbox.hostfunc import define_host_function
from omnicore.sandbox.pluginlog import PluginLog
from omnicore.storage import Storage
from omnicore.toolchains.testhost.services import Answers, Jobs, Secrets, Subscriptions

if TYPE_CHECKING:  # imported when first used: it loads the egress package
    from omnicore.toolchains.testhost.connectors import TestDatabases

__all__ = ["PLUGIN", "SERVED", "Current", "TestHost", "link"]

#: The plugin's name in a test (its Redis keys are under ``omnicore:plugin:``).
PLUGIN = "plugin"
#: The capabilities a test host serves: every built-in a plugin imports (fs is WASI's).
SERVED = frozenset({"log", "config", "mcp", "kv", "tasks", "events", "secrets", "http", "sql",
                    "redis", "vectors", "memory"})
_runs = itertools.count(1)


class TestHost:
    """The host of one test: its config, grants, log and services, and each capability's
    state bound to them. kv, memory and vectors keep their data in ``storage`` (the
    program's SQLite database) under a plugin name of this test's own (:attr:`owner`)."""

    def __init__(self, storage: Storage, data_dir: Path, handlers: tuple[str, ...],
                 shared: dict[str, Any]) -> None:
        self.answers = Answers()
        self.jobs = Jobs()
        self.subscriptions = Subscriptions()
        self.secrets = Secrets()
        self.log = PluginLog(PLUGIN, capacity=100_000, max_bytes=64 << 20,
                             rate_bytes=1 << 40, rate_lines=1 << 40)
        self.config: dict[str, Any] = {}
        self.grants: dict[str, dict[str, Any]] = {}
        self.redis_prefix = f"omnicore:{PLUGIN}:"
        #: The plugin's name in the stores that keep data per plugin (kv, memory, vectors):
        #: this test's own, so no test sees another's.
        self.owner = f"{PLUGIN}-test{next(_runs)}"
        self.storage = storage
        self._data_dir = data_dir
        self._handlers = handlers
        self._shared = shared  # what the program's tests share: the vector index
        # The in-memory services stand where an app's do: they have the methods the
        # capabilities call, not the app's classes. Each capability's module is imported
        # when the program first uses it (events, http and vectors pull in a lot).
        jobs: Any = self.jobs
        subscriptions: Any = self.subscriptions
        store: Any = self.secrets
        self._makers: dict[str, Callable[[], Capability]] = {
            "log": lambda: _module("log").CAPABILITY,
            "config": lambda: _module("config").CAPABILITY,
            "mcp": lambda: _module("mcp").CAPABILITY,
            "kv": lambda: _module("kv").capability(lambda _ctx: storage),
            "tasks": lambda: _module("tasks").capability(lambda _ctx: jobs),
            "events": lambda: _module("events").capability(lambda _ctx: subscriptions),
            "secrets": lambda: _module("secrets").capability(lambda _ctx: store),
            "http": self._http,
            "sql": lambda: _module("sql").capability(self.databases),
            "redis": lambda: _module("redis").capability(self.databases),
            "vectors": self._vectors,
            "memory": self._memory,
        }
        self.states: dict[str, Any] = {}

    @cached_property
    def databases(self) -> TestDatabases:
        """The app's connectors: SQL ones answering the script, Redis ones one MemoryRedis."""
        from omnicore.toolchains.testhost.connectors import TestDatabases

        return TestDatabases(self.answers)

    def _http(self) -> Capability:
        from omnicore.toolchains.testhost.connectors import TestEgress

        egress: Any = TestEgress(self.answers)
        return _module("http").capability(egress)  # type: ignore[no-any-return]

    def _vectors(self) -> Capability:
        return _module("vectors").capability(  # type: ignore[no-any-return]
            lambda _ctx: self.vector_store())

    def vector_store(self) -> Any:
        """The program's vector index (its files in the program's folder), as an app has one."""
        from omnicore.storage.vectors import VectorStore

        if "vectors" not in self._shared:
            self._shared["vectors"] = VectorStore(self.storage.vectors, self._data_dir / "vectors")
        return self._shared["vectors"]

    def _memory(self) -> Capability:
        from omnicore.storage.memory import MemoryStore

        rows = MemoryStore(self.storage.memory, self.vector_store)
        return _module("memory").capability(  # type: ignore[no-any-return]
            lambda _ctx: rows)

    def state(self, name: str) -> Any:
        """The state capability ``name`` hands its host functions, bound on first use."""
        found = self.states.get(name)
        if found is None:
            found = self.states[name] = self._bind(name)
        return found

    def rebind(self, name: str) -> None:
        """Bind ``name`` again at its next use (its grant or the config changed)."""
        self.states.pop(name, None)

    def capability(self, name: str) -> Capability:
        """The capability ``name`` over this host's services (its module imported now)."""
        return self._makers[name]()

    def _bind(self, name: str) -> Any:
        plugin = self.owner if name in ("kv", "memory", "vectors") else PLUGIN
        ctx = PluginContext(plugin, self.grants.get(name, {}), self.config, self.log,
                            self._data_dir, self._handlers)
        state = self.capability(name).bind(ctx)
        if name in ("sql", "redis"):
            from omnicore.toolchains.testhost.connectors import Everything

            state.allowed = Everything()  # the connectors a test uses are its own
        return state


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"omnicore.capabilities.{name}")


class Current:
    """The running test's host, which every host function of the program reads, and how to
    make a fresh one (``testing::reset``)."""

    host: TestHost
    make: Callable[[], TestHost]


def _served(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def serve(current: Current, mem: Any, *args: Any) -> Any:
        return fn(current.host.state(name), mem, *args)

    return serve


def _not_served(namespace: str, why: str) -> Callable[..., Any]:
    def refuse(_current: Current, _mem: Any, *_args: Any) -> Any:
        raise HostTrap(f"{namespace} is not served in unit tests ({why}); test it through "
                       "omnicore itself (omnicore call --app DIR)")

    return refuse


def link(linker: wasmtime.Linker, module: wasmtime.Module, current: Current,
         live: dict[int, RawInstance], keepalive: list[Any]) -> None:
    """Define every ``omnicore:<capability>`` function ``module`` imports, served by the
    built-in capability's own code for the running test (``current.host``). A capability
    with no in-memory service here (memory, vectors) traps with the reason when called."""
    from omnicore.capabilities.builtin import builtin_registry

    wanted = {i.module for i in module.imports if i.module.startswith("omnicore:")}
    wanted.discard("omnicore:testing")
    registry = builtin_registry()
    for namespace in sorted(wanted):
        name = namespace.partition(":")[2]
        cap = registry.get(name)
        if cap is None:
            continue  # the linker says which import is unknown
        for fn in cap.functions:
            impl = (_served(name, fn.impl) if name in SERVED else
                    _not_served(namespace, "no service for it here"))
            define_host_function(linker, namespace, fn.name, fn.params, fn.results, impl,
                                 current, live, keepalive)
