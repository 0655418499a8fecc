"""One instance of a component in its own store, and the faces of its exports bound so far:
the functions the runtime calls (.flatcall's canonical faces, the value API's functions),
each looked up once per instance."""

from __future__ import annotations

from typing import Any

import wasmtime
from wasmtime import component as cm

from omnicore.sandbox._wasmtime import component_func, context_of
from omnicore.sandbox.component.descriptors import DescriptorWatch
from omnicore.sandbox.component.flatcall import Bound, FlatCall, memory_view
from omnicore.sandbox.component.memory import Limiter, LinearMemory

__all__ = ["Instance"]


class Instance:
    """One instance in its own store, with its memory limiter and the functions looked up
    so far."""

    __slots__ = ("canon", "compiled", "funcs", "instance", "limiter", "memory", "store",
                 "watch")

    def __init__(self, store: wasmtime.Store, instance: cm.Instance, compiled: cm.Component,
                 limiter: Limiter, watch: DescriptorWatch | None,
                 memory: LinearMemory | None) -> None:
        self.store = store
        self.instance = instance
        self.compiled = compiled
        self.limiter = limiter
        self.watch = watch
        #: The instance's one linear memory, for the flat faces (.canonplan); None: several.
        self.memory = memory
        self.funcs: dict[str, Any] = {}
        #: The canonical faces bound so far (.flatcall), by export name (a plugin
        #: component's handler bytes: by its ``call``'s name and `` (bytes)``).
        self.canon: dict[str, Bound] = {}

    def export(self, name: str, path: tuple[str, ...]) -> Any:
        """The function of export ``name`` (at ``path`` in the component's exports)."""
        func = self.funcs.get(name)
        if func is None:
            index = None
            for part in path:
                index = self.compiled.get_export_index(part, index)
                assert index is not None  # read from this component's own type
            func = self.instance.get_func(self.store, index)  # type: ignore[arg-type]
            self.funcs[name] = func
        return func

    def face(self, export: str | None) -> Any:
        """The C handle of a face's function (None for none)."""
        return None if export is None else component_func(self.export(export, (export,)))

    def bound(self, name: str, flat: FlatCall, ticks: int, clock: Any) -> Bound:
        """Export ``name``'s canonical face (.flatcall), bound on its first call; its C face
        arms deadlines of ``ticks`` from ``clock`` (the engine's ``c_clock``)."""
        form = flat.form
        memory = self.memory
        bound = self.canon[name] = Bound(
            flat, context_of(self.store), self.face(form.export), self.face(form.realloc),
            self.face(form.post_return), memory,
            memory_view(memory) if memory is not None else None, ticks, clock)
        return bound

    def close(self) -> None:
        self.funcs.clear()
        for bound in self.canon.values():
            if bound.c is not None:
                bound.c.close()  # refuses a stray later call instead of touching the store
        self.canon.clear()
        self.store.close()
