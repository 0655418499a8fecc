"""``omnicore:redis`` (specs/abi.md §4.11): the plugin-facing door onto the app's Redis
connectors (:mod:`omnicore.egress.db.redis`).

``command(conn, conn_len, req, req_len) -> i64`` (§3.3): ``req`` is ``{"cmd", "args"}``; the
reply comes back as JSON. Every key lies under the connector's prefix for this plugin, which
the host adds; the grant names the connectors (``redis: {connectors: [cache]}``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

from omnicore import telemetry
from omnicore.capabilities.sql import (
    Bound,
    binder,
    check_connectors_grant,
    connector_call,
    wit_connector_call,
)
from omnicore.capabilities.types import AppServices
from omnicore.egress.db import Databases
from omnicore.sandbox import capability as cap

__all__ = ["CAPABILITY", "capability", "for_app"]

KINDS = ("redis",)


def _send(bound: Bound, deadline: float, name: str, req: dict[str, Any]) -> bytes:
    backend = bound.backend(name)
    if telemetry.ON:  # by command: never its keys or values
        with telemetry.db_operation("redis", name, req.get("cmd")):
            traced: bytes = backend.command(bound.plugin, req.get("cmd"), req.get("args"),
                                            deadline)
            return traced
    out: bytes = backend.command(bound.plugin, req.get("cmd"), req.get("args"), deadline)
    return out


def _command(bound: Bound, mem: cap.GuestMemory, cp: int, cl: int, rp: int, rl: int) -> int:
    return connector_call(mem, cp, cl, rp, rl, partial(_send, bound, mem.deadline))


_SIGNATURE = ("func(connector: string, request: string) -> "
              f"result<string, {cap.WitFunction.FAILURE}>")


def _wit_command(bound: Bound, deadline: float, connector: str, req: str) -> dict[str, Any]:
    return wit_connector_call(connector, req, partial(_send, bound, deadline))


def capability(databases: Databases | None = None) -> cap.Capability:
    """The ``redis`` capability over ``databases``."""
    return cap.Capability(
        name="redis",
        description="Redis commands under the plugin's key prefix on the app's connectors",
        functions=(cap.HostFunction("command", ("ptr", "len", "ptr", "len"), ("i64",), _command),),
        wit=(cap.WitFunction("command", _SIGNATURE, _wit_command, timed=True),),
        bind=binder(databases, KINDS, "redis"),
        check_grant=check_connectors_grant("redis"),
    )


#: For plugin hosts without an app: no connectors, so the grant cannot be served.
CAPABILITY = capability()


def for_app(app: AppServices) -> cap.Capability:
    """The redis capability over ``app.databases``."""
    return capability(app.databases)
