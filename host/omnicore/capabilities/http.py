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
from collections.abc import Callable
from typing import Any

from omnicore.capabilities import guestjson
from omnicore.capabilities.types import AppServices
from omnicore.egress import (
    MAX_REQUEST_JSON,
    Client,
    Egress,
    Refused,
    Request,
    Response,
    check_grant,
)
from omnicore.sandbox import capability as cap

__all__ = ["CAPABILITY", "capability", "for_app"]


def _exchange(client: Client, size: int, raw: Callable[[], bytes], body_size: int,
              body: Callable[[], bytes], deadline: float) -> Response:
    """Send the §4.7 request JSON ``raw()`` with ``body()``; Refused for any refusal or
    failure. Sizes are checked before either is read."""
    limit = client.policy.max_request_bytes
    if size > MAX_REQUEST_JSON:
        raise Refused("TOO_LARGE", f"request JSON is larger than {MAX_REQUEST_JSON} bytes")
    if body_size > limit:
        raise Refused("TOO_LARGE", f"body of {body_size} bytes exceeds max_request_bytes "
                                   f"({limit})")
    return client.send(Request.from_json(guestjson.request(raw()), body()), deadline)


def _request(client: Client, mem: cap.GuestMemory, rp: int, rl: int, bp: int, bl: int) -> int:
    mem.check(rp, rl, "request")
    mem.check(bp, bl, "body")
    try:
        resp = _exchange(client, rl, lambda: mem.read(rp, rl, "request"), bl,
                         lambda: mem.read(bp, bl, "body"), mem.deadline)
    except Refused as exc:
        return cap.refusal_block(mem, exc)
    head = json.dumps({"status": resp.status, "headers": resp.headers}, separators=(",", ":"),
                      ensure_ascii=False).encode()
    return mem.alloc_result(len(head).to_bytes(4, "little") + head + resp.body)


# omnicore:plugin/http (sdk/wit/plugin.wit): the same exchange for components.
_SIGNATURE = ("func(request: string, body: list<u8>) -> result<record { status: u16, "
              "headers: list<tuple<string, string>>, body: list<u8> }, "
              f"{cap.WitFunction.FAILURE}>")


def _wit_request(client: Client, deadline: float, request: str, body: bytes
                 ) -> dict[str, Any]:
    data = request.encode("utf-8")
    try:
        resp = _exchange(client, len(data), lambda: data, len(body), lambda: body, deadline)
    except Refused as exc:
        return cap.wit_failure(exc)
    return {"ok": {"status": resp.status, "headers": [[k, v] for k, v in resp.headers.items()],
                   "body": resp.body}}


def capability(egress: Egress | None = None) -> cap.Capability:
    """The ``http`` capability over ``egress`` (none: no connectors, no secrets)."""
    service = egress if egress is not None else Egress()

    def bind(ctx: cap.PluginContext) -> Client:
        return service.client(ctx.plugin, ctx.grant)

    return cap.Capability(
        name="http",
        description="outbound HTTP to the hosts in the grant and the app's connectors",
        functions=(cap.HostFunction("request", ("ptr", "len", "ptr", "len"), ("i64",), _request),),
        wit=(cap.WitFunction("request", _SIGNATURE, _wit_request, timed=True),),
        bind=bind,
        check_grant=check_grant,
    )


#: For plugin hosts without an app: no connectors.
CAPABILITY = capability()


def for_app(app: AppServices) -> cap.Capability:
    """The http capability over ``app.egress``."""
    return capability(app.egress)

