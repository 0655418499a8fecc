"""Events in the console: topics, subscribers with their inbox depth and drops, publishing.

API (reads: any signed-in user; publishing: admin)::

    GET  /api/v1/subscriptions   every plugin subscription: topic, handler, inbox, counters
    POST /api/v1/events          publish {"topic": "a.b", "data": <JSON>} (recorded)

(``GET /api/v1/events`` is the live feed's recent entries, events among them.)

Page: ``/events``, with the brokers bridged to the bus (console/bridges.py). A published
event goes where a plugin's would: into the event log (``storage.events``) and onto the app's
bus, so subscribers receive it and the live feed shows it; the audit log names who published
what topic.
"""

from __future__ import annotations

import json
from collections import Counter
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from omnicore.accounts.audit import Actor, record
from omnicore.capabilities.events import MAX_TOPIC_BYTES, TOPIC, PluginEvent
from omnicore.console import base, bridges
from omnicore.console.bodies import json_body
from omnicore.console.errors import ApiError, from_omni
from omnicore.console.render import done, page, read_form
from omnicore.console.responses import JSONResponse
from omnicore.errors import OmniError

if TYPE_CHECKING:
    from omnicore.app import OmniApp

__all__ = ["publish", "routes", "subscribers"]

#: How much of the event log the page reads to count topics.
RECENT = 500


def subscribers(app: OmniApp) -> list[dict[str, Any]]:
    return [{"plugin": s.plugin, "handler": s.handler, "topic": s.pattern,
             "durable": s.durable, "inbox": len(s.inbox), "delivered": s.delivered,
             "failed": s.failed, "dropped": s.dropped}
            for s in sorted(app.subscriptions.all(), key=lambda s: (s.plugin, s.handler))]


def publish(app: OmniApp, topic: str, data: bytes, by: Actor) -> int:
    """Log and publish ``data`` on ``topic`` as the operator ``by``; the event's id."""
    if not topic:
        raise ApiError(422, "a topic is needed: 'topic', dotted words of letters, digits, "
                            "'_' and '-' (e.g. plugin.shop.order)", type="InvalidTopic",
                       field="topic")
    if not isinstance(topic, str) or not 0 < len(topic.encode()) <= MAX_TOPIC_BYTES \
            or not TOPIC.fullmatch(topic):
        raise ApiError(422, f"topic {str(topic)[:60]!r} is not valid: dotted words of letters, "
                            f"digits, '_' and '-' (e.g. plugin.shop.order), at most "
                            f"{MAX_TOPIC_BYTES} bytes", type="InvalidTopic", field="topic")
    subs = app.subscriptions
    if len(data) > subs.max_payload_bytes:
        raise ApiError(413, f"the payload is {len(data)} bytes; events carry at most "
                            f"{subs.max_payload_bytes} (capabilities.events.max_payload_bytes)")
    event_id = app.storage.events.append(topic, None, data, subs.retain)
    app.events.publish(PluginEvent(topic=topic, plugin="", data=data, hops=1))
    record(app.storage, by, "event.publish", f"topic:{topic}", None, {"bytes": len(data)})
    return event_id


def _payload(text: str) -> bytes:
    """The form's payload: JSON as written when it parses, else the text as it is."""
    try:
        json.loads(text)
    except ValueError:
        return text.encode()
    return text.strip().encode()


def _summary(app: OmniApp) -> dict[str, Any]:
    recent = app.storage.events.recent(RECENT)
    counts = Counter(e.topic for e in recent)
    last: dict[str, float] = {}
    for e in recent:
        last.setdefault(e.topic, e.created_at)
    subs = subscribers(app)
    topics = [{"topic": t, "events": n, "last": last[t],
               "subscribers": [s for s in subs if _matches(s["topic"], t)]}
              for t, n in counts.most_common()]
    events = [{"id": e.id, "topic": e.topic, "plugin": e.plugin, "at": e.created_at,
               "payload": e.payload[:200].decode("utf-8", "replace"),
               "bytes": len(e.payload)} for e in recent[:50]]
    return {"topics": topics, "subscribers": subs, "events": events,
            "bridges": bridges.listing(app), "hop_drops": app.subscriptions.hop_drops,
            "dropped": sum(s["dropped"] for s in subs)}


def _matches(pattern: str, topic: str) -> bool:
    return pattern in ("*", topic) or fnmatchcase(topic, pattern)


# -- API -----------------------------------------------------------------------------------

@base.guarded
async def post_event(request: Request) -> Response:
    who = base.need(request, "admin")
    doc = await json_body(request)
    st = base.state(request)
    data = json.dumps(doc.get("data"), separators=(",", ":")).encode() \
        if "data" in doc else b""
    event_id = await st.off_loop(publish, st.app, doc.get("topic", ""), data,
                                 base.actor(request, who))
    return JSONResponse({"id": event_id, "topic": doc.get("topic")}, status_code=202)


# -- page ----------------------------------------------------------------------------------

async def _render(request: Request, status: int = 200, error: ApiError | None = None,
                  form: dict[str, str] | None = None) -> Response:
    st = base.state(request)
    summary = await st.off_loop(_summary, st.app)
    return page(request, "events.html", status, **summary, form_error=error,
                form=form or {}, max_bytes=st.app.subscriptions.max_payload_bytes)


async def events_post(request: Request) -> Response:
    who, f = await read_form(request)
    st = base.state(request)
    try:
        await st.off_loop(publish, st.app, f.get("topic", "").strip(),
                          _payload(f.get("payload", "")), base.actor(request, who))
    except OmniError as exc:
        return await _render(request, 422, from_omni(exc), f)
    except ApiError as exc:
        return await _render(request, exc.status, exc, f)
    return done("/events", "published")


async def events_page(request: Request) -> Response:
    base.need(request)
    return await _render(request)


def routes() -> list[BaseRoute]:
    return [
        *base.api("/subscriptions", GET=base.lister(subscribers)),
        *base.api("/events", POST=post_event),
        Route("/events", events_page, methods=["GET"]),
        Route("/events", events_post, methods=["POST"]),
    ]
