"""``omnicore:redis`` (specs/abi.md §4.11): the plugin-facing door onto the app's Redis
connectors (:mod:`omnicore.egress.db.redis`).

``command(conn, conn_len, req, req_len) -> i64`` (§3.3): ``req`` is ``{"cmd", "args"}``; the
reply comes back as JSON. Every key lies under the connector's prefix for this plugin, which
the host adds; the grant names the connectors (``redis: {connectors: [cache]}``).
"""

from __future__ import annotations

from typing import Any, Protocol

from omnicore.capabilities.sql import (
    Bound,
    check_connectors_grant,
    connector_name,
    error,
    request,
    wit_failure,
    wit_request,
)
from omnicore.egress.db import Databases
from omnicore.egress.refused import Refused
from omnicore.errors import ConfigError
from omnicore.sandbox.capability import (
    Capability,
    GuestMemory,
    HostFunction,
    PluginContext,
    WitFunction,
)

__all__ = ["CAPABILITY", "capability", "for_app"]

KINDS = ("redis",)


def _command(bound: Bound, mem: GuestMemory, cp: int, cl: int, rp: int, rl: int) -> int:
    try:
        backend = bound.backend(connector_name(mem, cp, cl))
        req = request(mem, rp, rl)
        out = backend.command(bound.plugin, req.get("cmd"), req.get("args"), mem.deadline)
    except Refused as exc:
        return error(mem, exc)
    return mem.alloc_result(out)


_SIGNATURE = ("func(connector: string, request: string) -> result<string, record { code: "
              "enum { not-found, denied, invalid, quota, unavailable, too-large }, message: "
              "string }>")


def _wit_command(bound: Bound, deadline: float, connector: str, req: str) -> dict[str, Any]:
    try:
        backend = bound.backend(connector)
        parsed = wit_request(req)
        if not isinstance(parsed, dict):
            raise Refused("INVALID", "the request must be a JSON object")
        out = backend.command(bound.plugin, parsed.get("cmd"), parsed.get("args"), deadline)
    except Refused as exc:
        return wit_failure(exc)
    return {"ok": out.decode()}


def capability(databases: Databases | None = None) -> Capability:
    """The ``redis`` capability over ``databases``."""
    def bind(ctx: PluginContext) -> Bound:
        if databases is None:
            raise ConfigError(f"plugin {ctx.plugin!r}: connectors are an app's (omnicore.yaml "
                              "and its secrets): run the plugin in an app (--app DIR)",
                              key="grant.redis")
        return Bound(ctx, databases, KINDS, "redis")

    return Capability(
        name="redis",
        description="Redis commands under the plugin's key prefix on the app's connectors",
        functions=(HostFunction("command", ("ptr", "len", "ptr", "len"), ("i64",), _command),),
        wit=(WitFunction("command", _SIGNATURE, _wit_command, timed=True),),
        bind=bind,
        check_grant=check_connectors_grant("redis"),
    )


#: For plugin hosts without an app: no connectors, so the grant cannot be served.
CAPABILITY = capability()


class RedisApp(Protocol):
    """What the redis capability needs of an app (``OmniApp`` has it)."""

    @property
    def databases(self) -> Databases: ...


def for_app(app: RedisApp) -> Capability:
    """The redis capability over ``app.databases``."""
    return capability(app.databases)
