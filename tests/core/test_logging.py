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


def test_the_live_feed_has_every_plugin_line_and_the_stream_only_its_level(
        stream: io.StringIO) -> None:
    """The console's live log shows plugins' info lines on a host whose log is set to
    warning; the host's stream prints none of them (issue 63), until set to info. The feed
    takes them from the forwarder, so no Python log record is made for a line the stream
    would drop (the logger's own level stays as configured)."""
    import asyncio

    from omnicore.console.live import LiveFeed
    from omnicore.logging import set_level
    from omnicore.sandbox.pluginlog import PluginLog, flush

    configure("warning", "text", stream)
    loop = asyncio.new_event_loop()
    feed = LiveFeed()
    feed.attach(loop)
    try:
        log = PluginLog("greeter-feed")
        for i in range(3):
            log.write("info", f"greeting {i}")
        log.write("warn", "slow")
        assert flush()
        assert [(e.kind, e.plugin, e.level, e.message) for e in feed.recent()] == [
            ("log", "greeter-feed", "info", "greeting 0"),
            ("log", "greeter-feed", "info", "greeting 1"),
            ("log", "greeter-feed", "info", "greeting 2"),
            ("log", "greeter-feed", "warn", "slow")]
        assert "greeting" not in stream.getvalue()
        assert "slow" in stream.getvalue()
        assert logging.getLogger("omnicore.plugin.greeter-feed").getEffectiveLevel() \
            == logging.WARNING
        set_level("info")  # what a reload of log.level does
        log.write("info", "now shown")
        assert flush()
        assert "now shown" in stream.getvalue()
        # Shown on the stream, and once in the feed: not again through the feed's handler.
        assert [e.message for e in feed.recent()].count("now shown") == 1
    finally:
        feed.detach()
        loop.close()
