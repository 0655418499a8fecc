"""Loading Python host extensions and calling their hooks.

Three sources, one mechanism: the app's built-in extensions (registered when the app is
constructed), the ``omnicore.extensions`` entry point group (loaded at start; the old group
``omnicore.plugins`` still works and logs a deprecation warning), and objects passed to
:meth:`ExtensionManager.register`.
An extension that fails to import, register, start or stop is logged, published as
``ExtensionFailed`` and recorded in :attr:`ExtensionManager.failures` (the health module
reports it as degraded); the app keeps going. Except at start, where a failure is fatal when
the app cannot serve without the extension (one registered ``required``: the built-ins, the
plugin host among them) or when it is a :class:`~omnicore.errors.ConfigError` (a key path
that does not exist, a trust key that does not load): the start fails with that error, the
extensions already started are shut down, and ``omnicore run`` exits non-zero saying why. A
host that said it started while serving nothing, its ``/readyz`` waiting for ever on a folder
it would never read, told the operator the wrong thing.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from typing import TYPE_CHECKING, Any

import pluggy

from omnicore.core.events import ExtensionFailed, ExtensionLoaded
from omnicore.errors import ConfigError
from omnicore.extensions import hookspecs

if TYPE_CHECKING:
    from omnicore.types import HostApp

__all__ = ["DEPRECATED_ENTRY_POINT_GROUP", "ENTRY_POINT_GROUP", "ExtensionManager"]

ENTRY_POINT_GROUP = "omnicore.extensions"
#: The group's name before extensions were called extensions; read too, with a warning.
DEPRECATED_ENTRY_POINT_GROUP = "omnicore.plugins"


class _Manager(pluggy.PluginManager):
    """A PluginManager that accepts plain methods named like a hook as implementations."""

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is None and name in hookspecs.HOOK_NAMES:
            if inspect.isclass(plugin):
                return None
            method = getattr(plugin, name, None)
            if inspect.isroutine(method):
                return pluggy.HookimplOpts(wrapper=False, hookwrapper=False,
                                           optionalhook=False, tryfirst=False,
                                           trylast=False, specname=None)
        return opts


def _extension_name(obj: object, fallback: str) -> str:
    name = getattr(obj, "name", None)
    return name if isinstance(name, str) and name else fallback


class ExtensionManager:
    """The app's extensions: ``app.extensions``."""

    def __init__(self, app: HostApp) -> None:
        self.app = app
        self.log = app.log.bind(component="extensions")
        self._pm = _Manager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._pm.hook.register.call_historic(kwargs={"app": app})
        self.failures: dict[str, str] = {}
        self._required: set[str] = set()
        self._entry_points_loaded = False

    @property
    def names(self) -> list[str]:
        """Names of the registered extensions, in registration order."""
        return [n for n, _ in self._pm.list_name_plugin() if n is not None]

    def get(self, name: str) -> object | None:
        """The extension registered as ``name``, or ``None``."""
        return self._pm.get_plugin(name)

    def register(self, ext: object, name: str | None = None, *, required: bool = False) -> bool:
        """Register ``ext`` (an object, module, or class to instantiate) and call its ``register``.

        Return ``True`` on success; on failure the extension is unregistered, the failure is
        recorded and published, and ``False`` is returned. ``required``: the app cannot serve
        without it, so a failure of its ``startup`` fails the app's start.
        """
        if inspect.isclass(ext):
            fallback = name or _extension_name(ext, ext.__name__)
            try:
                ext = ext()
            except Exception as exc:
                self._fail(fallback, "register", exc)
                return False
        ext_name = name or _extension_name(ext, getattr(ext, "__name__", None) or repr(ext))
        if self._pm.has_plugin(ext_name) or self._pm.is_registered(ext):
            self._fail(ext_name, "register", ValueError(f"extension {ext_name!r} is already "
                                                        "registered"))
            return False
        try:
            # The historic `register` hook fires for this extension inside pm.register().
            self._pm.register(ext, name=ext_name)
        except Exception as exc:
            if self._pm.is_registered(ext):
                self._pm.unregister(ext)
            self._fail(ext_name, "register", exc)
            return False
        self.failures.pop(ext_name, None)
        if required:
            self._required.add(ext_name)
        self.log.debug("extension %s registered", ext_name)
        self.app.events.publish(ExtensionLoaded(extension=ext_name))
        return True

    def load_module(self, dotted: str) -> bool:
        """Import module ``dotted`` and register it as an extension."""
        try:
            module = importlib.import_module(dotted)
        except Exception as exc:
            self._fail(dotted, "import", exc)
            return False
        return self.register(module, name=dotted)

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> int:
        """Load every extension advertised under ``group``; return how many registered.

        Runs once per app; later calls return 0. With the default group, extensions still
        advertised under :data:`DEPRECATED_ENTRY_POINT_GROUP` load too, with a warning.
        """
        if self._entry_points_loaded:
            return 0
        self._entry_points_loaded = True
        found = [(ep, group) for ep in importlib.metadata.entry_points(group=group)]
        if group == ENTRY_POINT_GROUP:
            found += [(ep, DEPRECATED_ENTRY_POINT_GROUP) for ep in
                      importlib.metadata.entry_points(group=DEPRECATED_ENTRY_POINT_GROUP)]
        count = 0
        for ep, where in found:
            if where == DEPRECATED_ENTRY_POINT_GROUP:
                self.log.warning("extension %s is advertised under the deprecated entry point "
                                 "group %r; rename the group to %r", ep.name, where,
                                 ENTRY_POINT_GROUP)
            try:
                obj = ep.load()
            except Exception as exc:
                self._fail(ep.name, "import", exc)
                continue
            if self.register(obj, name=_extension_name(obj, ep.name)):
                count += 1
        return count

    def _call_each(self, hook: str) -> list[Any]:
        """Call ``hook`` on every extension separately, so one failure does not skip the rest."""
        results: list[Any] = []
        caller = getattr(self._pm.hook, hook)
        # get_hookimpls() is in registration order (pluggy itself would call them reversed).
        for impl in caller.get_hookimpls():
            kwargs = {arg: self.app for arg in impl.argnames}
            try:
                results.append(impl.function(**kwargs))
            except Exception as exc:
                self._fail(impl.plugin_name, hook, exc)
        return results

    def startup(self) -> None:
        """Call every extension's ``startup(app)``, in registration order. A required
        extension's failure, or any ``ConfigError``, is raised once it and the extensions
        started before it are shut down; any other failure is recorded and the rest start."""
        for impl in self._pm.hook.startup.get_hookimpls():
            try:
                impl.function(**{arg: self.app for arg in impl.argnames})
            except Exception as exc:
                fatal = impl.plugin_name in self._required or isinstance(exc, ConfigError)
                self._fail(impl.plugin_name, "startup", exc, fatal=fatal)
                if fatal:
                    # It too: what it started before it failed (a thread, a watch) must end.
                    order = self.names
                    self._shutdown(set(order[:order.index(impl.plugin_name) + 1]))
                    raise

    def shutdown(self) -> None:
        """Call every extension's ``shutdown(app)``, in reverse registration order."""
        self._shutdown(None)

    def _shutdown(self, names: set[str] | None) -> None:
        """``shutdown(app)`` of the extensions ``names`` (None: all), the last started first."""
        for impl in reversed(self._pm.hook.shutdown.get_hookimpls()):
            if names is not None and impl.plugin_name not in names:
                continue
            try:
                impl.function(**{arg: self.app for arg in impl.argnames})
            except Exception as exc:
                self._fail(impl.plugin_name, "shutdown", exc)

    def capabilities(self) -> list[Any]:
        """Every capability contributed through the ``capabilities`` hook, as one flat list."""
        flat: list[Any] = []
        for result in self._call_each("capabilities"):
            if result is None:
                continue
            if isinstance(result, list | tuple):
                flat.extend(result)
            else:
                flat.append(result)
        return flat

    def _fail(self, name: str, stage: str, exc: BaseException, *, fatal: bool = False) -> None:
        error = f"{type(exc).__name__}: {exc}"
        self.failures[name] = f"{stage}: {error}"
        if fatal:  # raised to the app's start, which says it (a traceback only for a bug)
            self.log.error("extension %s failed at %s, so the app does not start: %s", name,
                           stage, error, exc_info=None if isinstance(exc, ConfigError) else exc)
        else:
            self.log.error("extension %s failed at %s: %s", name, stage, error, exc_info=exc)
        self.app.events.publish(ExtensionFailed(extension=name, stage=stage, error=error))
