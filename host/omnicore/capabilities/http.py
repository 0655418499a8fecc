"""``omnicore:http`` (specs/abi.md §4.7): the plugin-facing door onto :mod:`omnicore.egress`.

``request(req, req_len, body, body_len) -> i64`` (§3.3). ``req`` is JSON
``{"method", "url", "headers", "timeout_ms"}`` or ``{"method", "connector", "path", ...}``;
the answer is a guest-owned block ``head_len: u32 LE | {"status", "headers"} | body``, a
refusal or failure ``E = 1`` with ``"DENIED: ..."``, ``"INVALID: ..."``, ``"QUOTA: ..."``,
``"TOO_LARGE: ..."`` or ``"UNAVAILABLE: ..."``.

The grant's options (``allow_hosts``, ``allow_addresses``, ``connectors`` and the limits) are
an :class:`omnicore.egress.Policy`; each plugin gets its own client from the app's egress
service, which decides where the request may go, adds a connector's credentials and cuts
them out of the answer. The call's deadline bounds the whole exchange.
"""

from __future__ import annotations

import json
from typing import Protocol

from omnicore.capabilities import guestjson
from omnicore.egress import MAX_REQUEST_JSON, Client, Egress, Refused, Request, check_grant
from omnicore.sandbox.capability import Capability, GuestMemory, HostFunction, PluginContext

__all__ = ["CAPABILITY", "capability", "for_app"]


def _request(client: Client, mem: GuestMemory, rp: int, rl: int, bp: int, bl: int) -> int:
    mem.check(rp, rl, "request")
    mem.check(bp, bl, "body")
    limit = client.policy.max_request_bytes
    try:
        # Sizes first: checking them costs the host nothing, parsing does.
        if rl > MAX_REQUEST_JSON:
            raise Refused("TOO_LARGE", f"request JSON is larger than {MAX_REQUEST_JSON} bytes")
        if bl > limit:
            raise Refused("TOO_LARGE", f"body of {bl} bytes exceeds max_request_bytes ({limit})")
        try:
            req = guestjson.loads(mem.read(rp, rl, "request"))
        except (ValueError, UnicodeDecodeError) as exc:
            raise Refused("INVALID", f"request is not JSON: {exc}") from None
        resp = client.send(Request.from_json(req, mem.read(bp, bl, "body")), mem.deadline)
    except Refused as exc:
        return mem.alloc_result(f"{exc.status}: {exc}".encode(), error=True)
    head = json.dumps({"status": resp.status, "headers": resp.headers}, separators=(",", ":"),
                      ensure_ascii=False).encode()
    return mem.alloc_result(len(head).to_bytes(4, "little") + head + resp.body)


def capability(egress: Egress | None = None) -> Capability:
    """The ``http`` capability over ``egress`` (none: no connectors, no secrets)."""
    service = egress if egress is not None else Egress()

    def bind(ctx: PluginContext) -> Client:
        return service.client(ctx.plugin, ctx.grant)

    return Capability(
        name="http",
        description="outbound HTTP to the hosts in the grant and the app's connectors",
        functions=(HostFunction("request", ("ptr", "len", "ptr", "len"), ("i64",), _request),),
        bind=bind,
        check_grant=check_grant,
    )


#: For plugin hosts without an app: no connectors.
CAPABILITY = capability()


class HttpApp(Protocol):
    """What the http capability needs of an app (``OmniApp`` has it)."""

    @property
    def egress(self) -> Egress: ...


def for_app(app: HttpApp) -> Capability:
    """The http capability over ``app.egress``."""
    return capability(app.egress)

