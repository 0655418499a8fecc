"""What a host capability is, and the registry the sandbox links plugins against.

A capability is one ``omnicore:<name>`` import namespace: a list of host functions plus,
optionally, per-plugin state created by :meth:`Capability.bind`. Adding a capability is one
new module that defines a :class:`Capability` and returns it from the pluggy
``capabilities(app)`` hook (see ``omnicore.capabilities.builtin``). The hook may return a
:class:`DeferredCapability` instead: the registry imports its module when a plugin first needs
it (imports it, is granted it, or has a manifest entry it checks), so a host whose plugins use
only ``log`` never loads the storage backend, the egress client or numpy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from omnicore.errors import ConfigError
from omnicore.sandbox.fastcall import GuestMemory, HostTrap
from omnicore.sandbox.hostfunc import HOST_PARAM_TYPES
from omnicore.sandbox.pluginlog import PluginLog

__all__ = ["Capability", "CapabilityRegistry", "DeferredCapability", "GuestMemory",
           "HostFunction", "HostTrap", "ManifestCheck", "PluginContext", "Refusal", "Status",
           "WitFunction", "refusal_block", "wit_failure"]

#: ``check(plugin, manifest, handlers)``: raises ConfigError for a manifest entry that cannot
#: work (a malformed cron in ``schedules``, a subscription to a missing handler).
ManifestCheck = Callable[[str, Mapping[str, Any], Sequence[str]], None]


class Status:
    """Status codes of specs/abi.md §3.1."""

    NOT_FOUND = -1
    DENIED = -2
    INVALID = -3
    QUOTA = -4
    UNAVAILABLE = -5
    TOO_LARGE = -6

    #: The same codes as the cases of a WIT interface's ``error`` enum (sdk/wit/plugin.wit).
    WIT_CASES: ClassVar[dict[int, str]] = {
        -1: "not-found", -2: "denied", -3: "invalid", -4: "quota", -5: "unavailable",
        -6: "too-large"}

    #: The codes by the names refusals give them (:class:`Refusal`'s ``status``).
    NAMED: ClassVar[dict[str, int]] = {
        case.upper().replace("-", "_"): code for code, case in WIT_CASES.items()}

    @classmethod
    def wit_error(cls, code: int) -> dict[str, str]:
        """The WIT ``result`` of status ``code``: ``{"err": "quota"}``."""
        return {"err": cls.WIT_CASES[code]}

    @classmethod
    def of(cls, exc: BaseException) -> int:
        """The status answering a call into a service that raised ``exc``: the one a refusal
        names (its ``status``: egress's, storage's), else ``UNAVAILABLE``, the service
        failed."""
        name = getattr(exc, "status", None)
        return cls.NAMED.get(name, cls.UNAVAILABLE) if isinstance(name, str) \
            else cls.UNAVAILABLE


@dataclass(frozen=True, slots=True)
class HostFunction:
    """One imported function: ``impl(state, memory, *args)``.

    ``params`` use ``i32``, ``i64``, ``f32``, ``f64`` and the unsigned i32 aliases ``ptr`` and
    ``len``; ``results`` is empty or one of ``i32``/``i64``. ``state`` is what the
    capability's ``bind`` returned for the calling plugin; ``memory`` is the calling
    instance's :class:`GuestMemory` (bounds-checked; raise :class:`HostTrap` to trap).
    """

    name: str
    params: tuple[str, ...]
    results: tuple[str, ...]
    impl: Callable[..., Any]

    def __post_init__(self) -> None:
        bad = [p for p in self.params if p not in HOST_PARAM_TYPES]
        if bad or len(self.results) > 1 or any(r not in ("i32", "i64") for r in self.results):
            raise ValueError(f"host function {self.name}: unsupported types "
                             f"{self.params} -> {self.results}")

    @property
    def wasm_type(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(params, results) as wasm value types, e.g. (("i32", "i32"), ("i32",))."""
        return (tuple("i32" if p in ("ptr", "len") else p for p in self.params), self.results)


@dataclass(frozen=True, slots=True)
class WitFunction:
    """One function of a capability's WIT interface ``omnicore:plugin/<name>`` (sdk/wit/),
    for components: ``impl(state, *args)`` with the arguments and the answer in the JSON
    mapping of specs/components.md (``list<u8>`` arrives as ``bytes`` and may be answered
    with ``bytes``; a ``result`` is ``{"ok": v}`` or ``{"err": case}``).

    ``signature`` is the function's type as the host renders it (``func(key: string) ->
    option<string>``); a component importing the interface with any other type is refused
    at load. A ``timed`` function is called ``impl(state, deadline, *args)`` with the
    running call's deadline (``time.monotonic()`` seconds), for work that waits (HTTP).
    """

    #: The ``error`` enum of sdk/wit/plugin.wit (:attr:`Status.WIT_CASES`), as signatures
    #: write it, and the ``record`` of that code with a message (for answers that explain).
    ERROR: ClassVar[str] = f"enum {{ {', '.join(Status.WIT_CASES.values())} }}"
    FAILURE: ClassVar[str] = f"record {{ code: {ERROR}, message: string }}"

    name: str
    signature: str
    impl: Callable[..., Any]
    timed: bool = False


class Refusal(Protocol):
    """A refusal that names its status (``DENIED``, ``TOO_LARGE``: omnicore.egress's and
    omnicore.storage's)."""

    status: str


def refusal_block(mem: GuestMemory, exc: Refusal) -> int:
    """A refusal as the §3.3 answer of a re-entrant call: ``E = 1`` and ``"STATUS: why"``."""
    return mem.alloc_result(f"{exc.status}: {exc}".encode(), error=True)


def wit_failure(exc: Refusal) -> dict[str, Any]:
    """A refusal as the ``err`` of a WIT result of :attr:`WitFunction.FAILURE`."""
    return {"err": {"code": exc.status.lower().replace("_", "-"), "message": str(exc)}}


@dataclass(frozen=True, slots=True)
class PluginContext:
    """What a capability learns about the plugin it is bound to. Never another plugin's."""

    plugin: str
    grant: Mapping[str, Any]
    config: Mapping[str, Any]
    log: PluginLog
    data_dir: Path | None = None
    #: The plugin's handler names, from its module (a capability checks a name against
    #: them without a trip through the plugin host).
    handlers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Capability:
    """One ``omnicore:<name>`` namespace.

    ``bind`` makes the per-plugin state handed to every host function (default: the
    :class:`PluginContext` itself); ``check_grant`` validates the operator's grant options
    and raises ConfigError; ``default_grant`` makes it granted without being asked (log);
    ``check_manifest`` checks the plugin manifest entries the capability reads (tasks: its
    ``schedules``), run by the plugin host on every load, granted or not: a plugin whose
    entry cannot work fails to load with the reason. ``wit`` is the same capability as the
    WIT interface components import (empty: components cannot import it yet).
    """

    name: str
    functions: Sequence[HostFunction]
    description: str = ""
    default_grant: bool = False
    bind: Callable[[PluginContext], Any] = field(default=lambda ctx: ctx)
    check_grant: Callable[[Mapping[str, Any]], None] | None = None
    check_manifest: ManifestCheck | None = None
    wit: Sequence[WitFunction] = ()

    @property
    def namespace(self) -> str:
        """The wasm import module name: ``omnicore:<name>``."""
        return f"omnicore:{self.name}"

    def function(self, name: str) -> HostFunction | None:
        """The host function called ``name``, or None."""
        for fn in self.functions:
            if fn.name == name:
                return fn
        return None


@dataclass(frozen=True)
class DeferredCapability:
    """A capability known by name until a plugin needs it; ``load()`` makes the
    :class:`Capability` (importing its module). It declares what the registry must know
    before then: ``default_grant``, and ``manifest_keys``, the manifest entries its
    ``check_manifest`` reads (a manifest holding none of them needs no check)."""

    name: str
    load: Callable[[], Capability]
    default_grant: bool = False
    manifest_keys: tuple[str, ...] = ()

    @property
    def namespace(self) -> str:
        """The wasm import module name: ``omnicore:<name>``."""
        return f"omnicore:{self.name}"


class CapabilityRegistry:
    """The capabilities a sandbox can link, by name. Duplicate names are an error.

    A :class:`DeferredCapability` is loaded on the first :meth:`get` of its name, by
    iteration, or by :meth:`manifest_checks` for a manifest holding one of its keys; a loaded
    one that is not what it declared (another name, another ``default_grant``, a manifest
    check it did not declare) is a ConfigError.
    """

    def __init__(self, capabilities: Iterable[Capability | DeferredCapability] = ()) -> None:
        self._caps: dict[str, Capability | DeferredCapability] = {}
        self._loading = threading.RLock()  # a capability's load may ask for another
        for cap in capabilities:
            self.add(cap)

    def add(self, cap: Capability | DeferredCapability) -> None:
        """Register ``cap``; a second capability with the same name raises ConfigError."""
        if not isinstance(cap, (Capability, DeferredCapability)):
            raise ConfigError(f"not a Capability: {cap!r}", value=cap)
        if cap.name in self._caps:
            raise ConfigError(f"capability {cap.name!r} is registered twice", key=cap.name)
        self._caps[cap.name] = cap

    def get(self, name: str) -> Capability | None:
        """The capability called ``name`` (without the ``omnicore:`` prefix), or None."""
        cap = self._caps.get(name)
        return cap if not isinstance(cap, DeferredCapability) else self._load(cap)

    def _load(self, deferred: DeferredCapability) -> Capability:
        # One load per name: `for_app(app)` makes per-app state that two racing plugin loads
        # must share.
        with self._loading:
            current = self._caps[deferred.name]
            if isinstance(current, Capability):
                return current
            cap = deferred.load()
            if not isinstance(cap, Capability) or cap.name != deferred.name \
                    or cap.default_grant != deferred.default_grant \
                    or (cap.check_manifest is not None and not deferred.manifest_keys):
                raise ConfigError(f"capability {deferred.name!r} loaded as {cap!r}, which is "
                                  "not what its DeferredCapability declared", key=deferred.name)
            self._caps[deferred.name] = cap
            return cap

    def manifest_checks(self, manifest: Mapping[str, Any]) -> list[ManifestCheck]:
        """The checks of the capabilities that read entries of ``manifest``."""
        checks = []
        for cap in list(self._caps.values()):
            if isinstance(cap, DeferredCapability):
                if not any(key in manifest for key in cap.manifest_keys):
                    continue
                cap = self._load(cap)
            if cap.check_manifest is not None:
                checks.append(cap.check_manifest)
        return checks

    def __contains__(self, name: object) -> bool:
        return name in self._caps

    def __iter__(self) -> Iterator[Capability]:
        for name in list(self._caps):
            cap = self.get(name)
            if cap is not None:
                yield cap

    def __len__(self) -> int:
        return len(self._caps)

    def names(self) -> tuple[str, ...]:
        """Registered capability names, sorted."""
        return tuple(sorted(self._caps))

    def defaults(self) -> frozenset[str]:
        """Names granted without being asked."""
        return frozenset(n for n, c in self._caps.items() if c.default_grant)
