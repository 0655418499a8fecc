"""The base class of app modules, the order they start in, and the set that runs them.

:class:`ModuleSet` is the lifecycle of a list of modules (start in dependency order, drain
side by side, stop in reverse, each move published); :class:`ServiceModule` is a service of
the app as a module whose service object is made on first use.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from omnicore.core.events import ErrorOccurred, ModuleStateChanged
from omnicore.core.lifecycle import State
from omnicore.core.once import Once
from omnicore.errors import ModuleError
from omnicore.logging import BoundLogger, get_logger

if TYPE_CHECKING:
    from omnicore.config import OmniConfig
    from omnicore.core.events import EventBus
    from omnicore.core.tasks import TaskEngine

__all__ = ["Module", "ModuleHost", "ModuleSet", "ServiceModule", "start_order"]

S = TypeVar("S")


class ModuleHost(Protocol):
    """What a module sees of the app it was added to (``omnicore.OmniApp`` implements it).

    The seam sits here, beside :class:`Module`, because the two name each other; a module in
    a layer above the app's (the console) may narrow ``self.app`` to ``OmniApp``.
    """

    name: str
    runtime_id: str
    config: OmniConfig
    events: EventBus
    tasks: TaskEngine
    log: BoundLogger

    @property
    def data_dir(self) -> Path: ...

    @property
    def state(self) -> State: ...

    @property
    def uptime(self) -> float: ...

    @property
    def modules(self) -> list[Module]: ...

    def get_module(self, name: str) -> Module: ...

    def add_module(self, module: Module) -> Module: ...


class Module:
    """A named part of an app with a start/stop life.

    Subclass it and override :meth:`start`/:meth:`stop` (plain or ``async``). ``name``
    defaults to the class name without ``Module``, lowercased (``HealthModule`` → ``health``);
    ``depends_on`` names modules that must start first. The app calls :meth:`on_attach`
    when the module is added, so ``self.app`` is usable from then on.
    """

    name: str = ""
    depends_on: Sequence[str] = ()

    # Class-level defaults keep subclasses working even if their __init__ skips super().
    _app: ModuleHost | None = None
    _state: State = State.CREATED
    _log: BoundLogger | None = None
    # Set when a user's module replaced this default one; holders of a stale reference
    # (an extension that looked the module up at register time) are forwarded to it.
    _successor: Module | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("name"):
            base = cls.__name__.removesuffix("Module") or cls.__name__
            cls.name = base.lower()

    def __init__(self, name: str | None = None, *, depends_on: Iterable[str] | None = None) -> None:
        if name is not None:
            self.name = name
        if depends_on is not None:
            self.depends_on = tuple(depends_on)

    @property
    def app(self) -> ModuleHost:
        """The app this module was added to."""
        if self._app is None:
            raise ModuleError(f"module {self.name!r} is not added to an app",
                              module=self.name)
        return self._app

    @property
    def state(self) -> State:
        """This module's lifecycle state."""
        return self._state

    @property
    def log(self) -> BoundLogger:
        """A logger carrying the app's runtime id and this module's name."""
        if self._log is None:
            if self._app is not None:
                self._log = self._app.log.bind(module=self.name)
            else:
                return get_logger("omnicore.module", module=self.name)
        return self._log

    def on_attach(self, app: ModuleHost) -> None:
        """Called when the module is added to ``app``; register checks, collectors here."""

    def replaces(self, old: Module) -> None:
        """Take over what others registered on ``old``, the app's default module of this name."""

    @property
    def current(self) -> Module:
        """This module, or the module that replaced it in its app (followed to the end)."""
        m = self
        while m._successor is not None:
            m = m._successor
        return m

    def start(self) -> Awaitable[None] | None:
        """Acquire resources. Raise to make the app's start fail."""
        return None

    def drain(self, grace: float) -> Awaitable[None] | None:
        """Stop taking new work and let what runs finish, within ``grace`` seconds (the app's
        ``shutdown_grace_s``). The app drains every started module side by side, so the grace
        counts once, before it stops any; :meth:`stop` follows. Default: nothing to drain."""
        return None

    def stop(self) -> Awaitable[None] | None:
        """Release resources; called in reverse start order."""
        return None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {self._state.value}>"


def start_order(modules: Sequence[Module]) -> list[Module]:
    """Insertion order, except that a module's dependencies start before it.

    Raise :class:`ModuleError` for a dependency that is not added or a cycle.
    """
    by_name = {m.name: m for m in modules}
    order: list[Module] = []
    done: set[str] = set()
    visiting: list[str] = []

    def visit(m: Module) -> None:
        if m.name in done:
            return
        if m.name in visiting:
            cycle = " -> ".join([*visiting[visiting.index(m.name):], m.name])
            raise ModuleError(f"module dependencies form a cycle: {cycle}", module=m.name)
        visiting.append(m.name)
        for dep in m.depends_on:
            if dep not in by_name:
                raise ModuleError(
                    f"module {m.name!r} depends on {dep!r}, which is not added "
                    f"(modules: {', '.join(by_name) or 'none'})",
                    module=m.name,
                )
            visit(by_name[dep])
        visiting.pop()
        done.add(m.name)
        order.append(m)

    for m in modules:
        visit(m)
    return order


class ServiceModule(Module, Generic[S]):
    """A service of the app (jobs, workflows...) as a lifecycle module.

    The module is cheap and added when the app is built; the service object is made by
    ``make`` on first use of :attr:`service` (at the latest when the module starts), so an
    app that never starts and never asks for it (``omnicore call``) never imports it.
    ``start(service)``, ``drain(service, grace)`` and ``stop(service)`` are the service's own
    lifecycle calls; drain and stop block (threads join), so they run off the event loop.
    """

    def __init__(self, name: str, make: Callable[[], S], *, depends_on: Iterable[str] = (),
                 start: Callable[[S], object] | None = None,
                 drain: Callable[[S, float], object] | None = None,
                 stop: Callable[[S], object] | None = None) -> None:
        super().__init__(name, depends_on=depends_on)
        self._service = Once(make)
        self._start, self._drain, self._stop = start, drain, stop

    @property
    def service(self) -> S:
        """The service, made on first use (once, whichever thread asks first)."""
        return self._service.get()

    @property
    def made(self) -> bool:
        """Whether the service was made (asking does not make it)."""
        return self._service.made is not None

    def start(self) -> None:
        if self._start is not None:
            self._start(self.service)

    async def drain(self, grace: float) -> None:
        import asyncio  # in the coroutines: a one-off `omnicore call` runs no loop

        if self._drain is not None and self.made:
            await asyncio.to_thread(self._drain, self.service, grace)

    async def stop(self) -> None:
        import asyncio

        if self._stop is not None and self.made:
            await asyncio.to_thread(self._stop, self.service)


class ModuleSet:
    """One app's modules by name, in insertion order, and their lifecycle.

    :meth:`start` starts them in :func:`start_order`, :meth:`drain` drains the started ones
    side by side, :meth:`stop` stops them in reverse start order; every move of a module's
    state is published as :class:`~omnicore.core.events.ModuleStateChanged`.
    """

    def __init__(self, host: ModuleHost) -> None:
        self._host = host
        self._modules: dict[str, Module] = {}
        self._defaults: set[str] = set()
        self._started: list[Module] = []

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def __len__(self) -> int:
        return len(self._modules)

    @property
    def names(self) -> list[str]:
        return list(self._modules)

    @property
    def started(self) -> list[Module]:
        """The modules started and not stopped yet, in start order."""
        return list(self._started)

    def add(self, module: Module, *, default: bool = False) -> Module:
        """Add and attach ``module``; one named like a ``default`` one replaces it (and takes
        over what was registered on it)."""
        if not module.name:
            raise ModuleError("a module needs a non-empty name", module=module.name)
        existing = self._modules.get(module.name)
        if existing is module:
            return module
        if existing is not None:
            if module.name not in self._defaults:
                raise ModuleError(f"app {self._host.name!r} already has a module named "
                                  f"{module.name!r}", module=module.name)
            module.replaces(existing)
            existing._successor = module
            self._defaults.discard(module.name)
        if module._app is not None and module._app is not self._host:
            raise ModuleError(f"module {module.name!r} already belongs to app "
                              f"{module._app.name!r}", module=module.name)
        module._app = self._host
        module._log = None
        self._modules[module.name] = module
        if default:
            self._defaults.add(module.name)
        module.on_attach(self._host)
        return module

    def get(self, name: str) -> Module:
        """The module named ``name``; KeyError naming the ones there are."""
        try:
            return self._modules[name]
        except KeyError:
            raise KeyError(f"app {self._host.name!r} has no module {name!r} "
                           f"(modules: {', '.join(self._modules) or 'none'})") from None

    def order(self) -> list[Module]:
        """The start order (ModuleError for a missing dependency or a cycle)."""
        return start_order(list(self._modules.values()))

    def _move(self, module: Module, new: State, error: str | None = None) -> None:
        old, module._state = module._state, new
        self._host.events.publish(ModuleStateChanged(module=module.name, old=old.value,
                                                     new=new.value, error=error))

    async def start(self, order: Sequence[Module] | None = None) -> None:
        """Start each module in ``order`` (default :meth:`order`); the first that fails is
        marked failed and raised as a ModuleError (the started ones stay started: the caller
        stops them)."""
        for module in self.order() if order is None else order:
            self._move(module, State.STARTING)
            try:
                await _settled(module.start())
            except Exception as exc:
                why = f"{type(exc).__name__}: {exc}"
                self._move(module, State.FAILED, why)
                self._host.log.error("module %s failed to start: %s", module.name, why)
                raise ModuleError(f"module {module.name!r} failed to start: {why}",
                                  module=module.name) from exc
            self._move(module, State.RUNNING)
            self._started.append(module)

    async def drain(self, grace: float) -> list[str]:
        """Drain every started module side by side; the failures, as :meth:`stop` words them."""
        async def one(module: Module) -> str | None:
            try:
                await _settled(module.drain(grace))
            except Exception as exc:
                return self._failed(module, "drain", exc)
            return None

        import asyncio

        found = await asyncio.gather(*(one(m) for m in self._started))
        return [f for f in found if f is not None]

    async def stop(self) -> list[str]:
        """Stop the started modules in reverse start order, every one even if one fails; the
        failures (``'name' (Error: why)``)."""
        failures = []
        while self._started:
            module = self._started.pop()
            self._move(module, State.STOPPING)
            try:
                await _settled(module.stop())
            except Exception as exc:
                failures.append(self._failed(module, "stop", exc))
            else:
                self._move(module, State.STOPPED)
        return failures

    def _failed(self, module: Module, stage: str, exc: Exception) -> str:
        why = f"{type(exc).__name__}: {exc}"
        self._move(module, State.FAILED, why)
        self._host.log.error("module %s failed to %s: %s", module.name, stage, why)
        self._host.events.publish(ErrorOccurred(source=f"module {module.name}", error=why,
                                                exc=exc))
        return f"{module.name!r} ({why})"


async def _settled(result: object) -> None:
    # A module's start, drain and stop may be plain or ``async``: await what they returned.
    if inspect.isawaitable(result):
        await result
