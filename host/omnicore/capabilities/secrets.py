"""``omnicore:secrets`` (specs/abi.md §4.9): a plugin reads the secrets exposed to it.

The store is :class:`omnicore.storage.secrets.SecretStore` (encrypted at rest), managed by
operators with ``omnicore secrets set|list|delete|rotate`` or ``app.secrets``. A plugin reads
a secret only when its grant names it (``expose = ["NAME"]``); prefer connectors
(``omnicore:http``), which use a secret without the plugin ever seeing it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from omnicore.capabilities import standalone
from omnicore.capabilities.types import AppServices
from omnicore.errors import ConfigError
from omnicore.sandbox import capability as cap
from omnicore.storage import StorageError, shared_storage
from omnicore.storage.secrets import SecretStore, check_name

__all__ = ["CAPABILITY", "capability", "for_app"]

_MAX_NAME = 128


def _check_grant(options: Mapping[str, Any]) -> None:
    unknown = sorted(set(options) - {"expose"})
    if unknown:
        raise ConfigError(f"grant 'secrets' has no option {unknown[0]!r} (known: expose)",
                          key=f"grant.secrets.{unknown[0]}")
    expose = options.get("expose", [])
    if not isinstance(expose, list):
        raise ConfigError("grant 'secrets': expose must be a list of secret names",
                          key="grant.secrets.expose", value=expose)
    for name in expose:
        check_name(name)


class _State:
    __slots__ = ("_open", "_store", "expose")

    def __init__(self, open_store: Callable[[], SecretStore], expose: frozenset[str]) -> None:
        self._open = open_store
        self._store: SecretStore | None = None
        self.expose = expose

    def store(self) -> SecretStore:
        if self._store is None:
            self._store = self._open()
        return self._store


def _read(state: _State, name: str) -> bytes | int:
    """The exposed secret ``name``, or a negative status."""
    if name not in state.expose:
        return cap.Status.DENIED
    try:
        value = state.store().get(name)
    except (StorageError, ConfigError):
        return cap.Status.UNAVAILABLE
    return cap.Status.NOT_FOUND if value is None else value


def _get(state: _State, mem: cap.GuestMemory, nptr: int, nlen: int, out: int, out_cap: int) -> int:
    name = mem.read_name(nptr, nlen, _MAX_NAME, "secret name")
    mem.check(out, out_cap, "output buffer")
    if name is None:
        return cap.Status.INVALID
    value = _read(state, name)
    return value if isinstance(value, int) else mem.write_result(value, out, out_cap)


# omnicore:plugin/secrets (sdk/wit/plugin.wit): the same read for components.
_ERROR = cap.WitFunction.ERROR


def _wit_get(state: _State, name: str) -> dict[str, Any]:
    if not 0 < len(name.encode("utf-8")) <= _MAX_NAME:
        return cap.Status.wit_error(cap.Status.INVALID)
    value = _read(state, name)
    return cap.Status.wit_error(value) if isinstance(value, int) else {"ok": value}


WIT_FUNCTIONS = (
    cap.WitFunction("get", f"func(name: string) -> result<list<u8>, {_ERROR}>", _wit_get),
)


def capability(store: Callable[[cap.PluginContext], SecretStore]) -> cap.Capability:
    """The ``secrets`` capability reading the store ``store(ctx)`` returns (opened lazily:
    a plugin that never reads a secret never creates a key)."""
    def bind(ctx: cap.PluginContext) -> _State:
        return _State(lambda: store(ctx), frozenset(ctx.grant.get("expose", ())))

    return cap.Capability(
        name="secrets",
        description="read the secrets the operator exposed to this plugin (grant: expose)",
        functions=(cap.HostFunction("get", ("ptr", "len", "ptr", "len"), ("i32",), _get),),
        bind=bind,
        check_grant=_check_grant,
        wit=WIT_FUNCTIONS,
    )


def _standalone(ctx: cap.PluginContext) -> SecretStore:
    data_dir = standalone.data_dir(ctx, "secrets")
    return SecretStore(shared_storage(data_dir).secrets, data_dir)


#: For plugin hosts without an app: the store in the host's ``data_dir``.
CAPABILITY = capability(_standalone)


def for_app(app: AppServices) -> cap.Capability:
    """The secrets capability on ``app.secrets``."""
    return capability(lambda _ctx: app.secrets)
