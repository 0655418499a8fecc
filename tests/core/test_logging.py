from __future__ import annotations

import io
import json
import logging
from collections.abc import Callable, Iterator

import pytest

from omnicore.app import OmniApp
from omnicore.core.module import Module
from omnicore.logging import configure, get_logger

MakeApp = Callable[..., OmniApp]


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    root = logging.getLogger("omnicore")
    saved = (list(root.handlers), root.level, root.propagate)
    yield buf
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    root.propagate = saved[2]


class Worker(Module):
    def start(self) -> None:
        self.log.info("worker up")


def test_json_logs_carry_runtime_id_and_module(make_app: MakeApp, stream: io.StringIO) -> None:
    configure("info", "json", stream)
    app = make_app("logged")
    app.add_module(Worker())
    app.start()
    app.log.bind(plugin="greeter").warning("plugin %s is slow", "greeter")
    app.stop()
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert records and all(r["runtime_id"] == app.runtime_id for r in records)
    worker = next(r for r in records if r["msg"] == "worker up")
    assert worker["module"] == "worker" and worker["app"] == "logged"
    slow = next(r for r in records if r["msg"] == "plugin greeter is slow")
    assert slow["plugin"] == "greeter" and slow["level"] == "warning"


def test_text_format_level_and_reconfigure(stream: io.StringIO) -> None:
    configure("warning", "text", stream)
    configure("warning", "text", stream)  # replaces its own handler: no duplicate lines
    log = get_logger("tests", runtime_id="rt-1")
    log.info("hidden")
    log.warning("shown %d", 7, extra={"plugin": "p"})
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    assert "WARNING" in lines[0] and "omnicore.tests: shown 7" in lines[0]
    assert "[runtime_id=rt-1 plugin=p]" in lines[0]
    assert get_logger("omnicore.x").logger.name == "omnicore.x"


def test_exceptions_are_rendered(stream: io.StringIO) -> None:
    configure("info", "json", stream)
    try:
        raise ValueError("bad")
    except ValueError:
        get_logger("t").exception("failed")
    rec = json.loads(stream.getvalue())
    assert rec["msg"] == "failed" and "ValueError: bad" in rec["exc"]


def test_the_level_holds_for_the_stream_when_the_live_feed_lowers_plugins(
        stream: io.StringIO) -> None:
    """The console's live log lets plugins' info lines through to its view; the host's
    stream set to warning still prints none of them (issue 63), until set to info."""
    import asyncio

    from omnicore.console.live import LiveFeed
    from omnicore.logging import set_level

    plugins = logging.getLogger("omnicore.plugin")
    saved = plugins.level
    configure("warning", "text", stream)
    loop = asyncio.new_event_loop()
    feed = LiveFeed()
    feed.attach(loop)
    try:
        log = logging.getLogger("omnicore.plugin.greeter")
        for i in range(3):
            log.info("greeting %d", i)
        log.warning("slow")
        loop.run_until_complete(asyncio.sleep(0))  # the feed's one delivery of the batch
        assert [e.message for e in feed.recent()] == ["greeting 0", "greeting 1",
                                                      "greeting 2", "slow"]
        assert "greeting" not in stream.getvalue()
        assert "slow" in stream.getvalue()
        set_level("info")  # what a reload of log.level does
        log.info("now shown")
        assert "now shown" in stream.getvalue()
    finally:
        feed.detach()
        loop.close()
        plugins.setLevel(saved)
