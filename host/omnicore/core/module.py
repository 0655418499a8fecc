"""The base class of app modules and the order they start in."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from omnicore.core.lifecycle import State
from omnicore.errors import ModuleError
from omnicore.logging import BoundLogger, get_logger

if TYPE_CHECKING:
    from omnicore.config import OmniConfig
    from omnicore.core.events import EventBus
    from omnicore.core.tasks import TaskEngine

__all__ = ["Module", "ModuleHost", "start_order"]


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
