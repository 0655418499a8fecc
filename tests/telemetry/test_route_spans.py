"""A plugin's HTTP route (specs/http-routes.md) is traced as the REST API is (issue 62, item
2): a server span for the request, an incoming ``traceparent`` continued, the route's plugin
call beneath it. A real host serving a route, tracing on an in-memory exporter in this
process, turned off again after the test."""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from omnicore import telemetry
from tests.routes import conftest as routes
from tests.routes.conftest import RouteHost
from tests.routes.test_hostile import route
from tests.waiting import eventually

route_host = routes.route_host  # the routes tests' host, as a fixture here
TRACE_ID = "0af7651916cd43dd8448eb211c80319c"


def test_a_route_request_is_a_server_span_with_its_plugin_call_beneath(
        spans: InMemorySpanExporter, route_host: Callable[..., RouteHost]) -> None:
    host = route_host(routes={"echo": route("echo", "/echo/{who}")})
    r = host.client.post("/http/echo/ada?token=s3cret", content=b"ok",
                         headers={"traceparent": f"00-{TRACE_ID}-b7ad6b7169203331-01"})
    assert r.status_code == 200 and r.content == b"ok"

    def arrived() -> list[ReadableSpan] | None:
        telemetry.flush()
        mine = [s for s in spans.get_finished_spans()
                if s.context.trace_id == int(TRACE_ID, 16)]
        return mine if len(mine) == 2 else None

    made = eventually(arrived, "the route's two spans")
    request = next(s for s in made if s.kind == SpanKind.SERVER)
    call = next(s for s in made if s.kind == SpanKind.INTERNAL)
    assert request.parent is not None and request.parent.span_id == 0xb7ad6b7169203331
    assert request.parent.is_remote
    assert request.attributes is not None
    assert request.attributes["url.path"] == "/http/echo/ada"  # never the query string
    # The route's own template, not the mount's /http: a route's requests are one series.
    assert request.attributes["http.route"] == "/http/echo/{who}"
    assert request.name == "POST /http/echo/{who}"
    assert request.attributes["http.response.status_code"] == 200
    assert call.name == "call web/echo"
    assert call.parent is not None and call.parent.span_id == request.context.span_id
