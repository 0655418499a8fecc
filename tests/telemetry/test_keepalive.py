"""A traced request's context ends with its response: what the server keeps of a connection
between requests (Hypercorn's keep-alive wait, a task started by the response's last send,
whose timer stays in the loop's heap for seconds once cancelled) and what the console does for
a request (a body's deadline: a cancelled timer of 30 s) do not hold its span context. Held,
they kept three objects a request alive for seconds, and the young collections those brought
on were a twentieth of tracing's cost (issue 62). A streamed answer is sent from a task of its
own, whose context is a copy of the request's: its last send sets that copy back, so the
keep-alive wait does not hold its span context either."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from omnicore import OmniApp, telemetry
from omnicore.console import ConsoleModule
from omnicore.telemetry import _spans
from tests.waiting import eventually

GREETER = Path(__file__).resolve().parents[2] / "build" / "plugins" / "greeter-rust.wasm"


def _timers(loop: asyncio.AbstractEventLoop) -> list[tuple[bool, Any]]:
    """The loop's timers (cancelled or not) and the span current in each one's context."""
    async def look() -> list[tuple[bool, Any]]:
        return [(h.cancelled(), h._context.get(_spans.CURRENT))  # type: ignore[attr-defined]
                for h in loop._scheduled]  # type: ignore[attr-defined]

    return asyncio.run_coroutine_threadsafe(look(), loop).result(10)


def test_the_connections_keep_alive_does_not_hold_a_requests_span(
        tmp_path: Path, spans: InMemorySpanExporter) -> None:
    (tmp_path / "plugins").mkdir()
    shutil.copy(GREETER, tmp_path / "plugins")
    app = OmniApp("keepalive", overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(tmp_path / "plugins"),
        "console": {"port": 0}, "plugins": {"greeter-rust": {"grants": ["config", "log"]}}})
    module = ConsoleModule()
    app.add_module(module)
    app.start()
    try:
        assert app.loop is not None and module.console is not None and module.url
        token = module.console.auth.local_token
        # One kept-alive connection.
        with httpx.Client(base_url=module.url, headers={"Authorization": f"Bearer {token}"},
                          timeout=30) as client:
            for name in ("Ada", "Grace", "Edsger"):
                r = client.post("/api/v1/plugins/greeter-rust/invoke",
                                json={"handler": "greet", "input": json.dumps({"name": name})})
                assert r.status_code == 200, r.text
            timers = _timers(app.loop)
            # The last request's keep-alive wait is running (the earlier ones', cancelled,
            # may still be there, and the deadlines of bodies read): no timer holds a span.
            assert any(not cancelled for cancelled, _ in timers), timers
            assert [span for _, span in timers if span is not None] == []
            # A streamed answer (a file: Starlette sends it from a task of its own, whose
            # context is a copy) is answered and traced, and its copy does not reach the
            # keep-alive wait either.
            r = client.get("/static/console.css")
            assert r.status_code == 200 and r.content
            timers = _timers(app.loop)
            assert any(not cancelled for cancelled, _ in timers), timers
            assert [span for _, span in timers if span is not None] == []
        # ... while the requests were traced, each with its plugin call beneath. (A request's
        # span ends once its last message is sent: the client may have its answer first.)
        def ended() -> list[ReadableSpan] | None:
            telemetry.flush()
            found = spans.get_finished_spans()
            return list(found) if sum(s.kind.name == "SERVER" for s in found) >= 4 else None

        finished = eventually(ended, "the four requests' spans")
        (static,) = [s for s in finished if s.name == "GET /static"]
        assert static.attributes is not None
        assert static.attributes["http.response.status_code"] == 200
        served = [s for s in finished if s.name == "POST /api/v1/plugins/{name}/invoke"]
        calls = [s for s in finished if s.name == "call greeter-rust/greet"]
        assert len(served) == len(calls) == 3
        assert {c.parent.span_id for c in calls if c.parent} == \
            {s.context.span_id for s in served}
    finally:
        app.stop()
