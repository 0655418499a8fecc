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

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import wasmtime

from omnicore.capabilities import config, events, http, kv, log, mcp, redis, secrets, sql, tasks
from omnicore.sandbox.capability import Capability, HostTrap, PluginContext
from omnicore.sandbox.fastcall import RawInstance
from omnicore.sandbox.hostfunc import define_host_function
from omnicore.sandbox.pluginlog import PluginLog
from omnicore.storage import Storage
from omnicore.toolchains.testhost.services import (
    Answers,
    Everything,
    Jobs,
    Secrets,
    Subscriptions,
    TestDatabases,
    TestEgress,
)

__all__ = ["PLUGIN", "SERVED", "Current", "TestHost", "link"]

#: The plugin's name in a test (its Redis keys are under ``omnicore:plugin:``).
PLUGIN = "plugin"
#: The capabilities a test host serves (memory and vectors need an app's services).
SERVED = frozenset({"log", "config", "mcp", "kv", "tasks", "events", "secrets", "http", "sql",
                    "redis"})
_runs = itertools.count(1)


class TestHost:
    """The host of one test: its config, grants, log and services, and each capability's
    state bound to them. kv keeps its keys in ``storage`` (the program's SQLite database,
    under a plugin name of this test's own, so no test sees another's keys)."""

    def __init__(self, storage: Storage, data_dir: Path, handlers: tuple[str, ...]) -> None:
        self.answers = Answers()
        self.jobs = Jobs()
        self.subscriptions = Subscriptions()
        self.secrets = Secrets()
        self.databases = TestDatabases(self.answers)
        self.log = PluginLog(PLUGIN, capacity=100_000, max_bytes=64 << 20,
                             rate_bytes=1 << 40, rate_lines=1 << 40)
        self.config: dict[str, Any] = {}
        self.grants: dict[str, dict[str, Any]] = {}
        self.redis_prefix = f"omnicore:{PLUGIN}:"
        self.kv_owner = f"{PLUGIN}-test{next(_runs)}"
        self.storage = storage
        self._data_dir = data_dir
        self._handlers = handlers
        # The in-memory services stand where an app's do: they have the methods the
        # capabilities call, not the app's classes.
        jobs: Any = self.jobs
        subscriptions: Any = self.subscriptions
        store: Any = self.secrets
        databases: Any = self.databases
        egress: Any = TestEgress(self.answers)
        self.capabilities: dict[str, Capability] = {c.name: c for c in (
            log.CAPABILITY, config.CAPABILITY, mcp.CAPABILITY,
            kv.capability(lambda _ctx: storage),
            tasks.capability(lambda _ctx: jobs),
            events.capability(lambda _ctx: subscriptions),
            secrets.capability(lambda _ctx: store),
            http.capability(egress),
            sql.capability(databases),
            redis.capability(databases),
        )}
        self.states: dict[str, Any] = {}

    def state(self, name: str) -> Any:
        """The state capability ``name`` hands its host functions, bound on first use."""
        found = self.states.get(name)
        if found is None:
            found = self.states[name] = self._bind(name)
        return found

    def rebind(self, name: str) -> None:
        """Bind ``name`` again at its next use (its grant or the config changed)."""
        self.states.pop(name, None)

    def _bind(self, name: str) -> Any:
        plugin = self.kv_owner if name == "kv" else PLUGIN
        ctx = PluginContext(plugin, self.grants.get(name, {}), self.config, self.log,
                            self._data_dir, self._handlers)
        state = self.capabilities[name].bind(ctx)
        if name in ("sql", "redis"):
            state.allowed = Everything()  # the connectors a test uses are its own
        return state


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
                    _not_served(namespace, "no in-memory service for it"))
            define_host_function(linker, namespace, fn.name, fn.params, fn.results, impl,
                                 current, live, keepalive)
