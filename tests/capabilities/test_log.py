"""omnicore:log (specs/abi.md §4.1) and PluginLog."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
import wasmtime

from omnicore.capabilities import builtin
from omnicore.errors import ConfigError, DeadlineExceeded
from omnicore.sandbox import Limits, PluginRuntime
from omnicore.sandbox.pluginlog import flush
from tests.waiting import fastest

Make = Callable[..., PluginRuntime]


def test_write_reaches_ring_buffer_and_python_logging(make: Make,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    rt = make("echo")
    with caplog.at_level(logging.INFO, logger="omnicore.plugin.echo"):
        assert rt.call("log", "héllo wörld".encode()) == b"ok"
        assert flush()  # Python logging gets the line off the call path
    [line] = rt.log.lines()
    assert (line.level, line.message) == ("info", "héllo wörld")
    [rec] = [r for r in caplog.records if r.name == "omnicore.plugin.echo"]
    assert rec.getMessage() == "héllo wörld" and rec.plugin == "echo"  # type: ignore[attr-defined]


def test_invalid_utf8_is_replaced_not_refused(make: Make) -> None:
    rt = make("echo")
    rt.call("log", b"bad \xff\xfe bytes")
    assert rt.log.lines()[-1].message == "bad \ufffd\ufffd bytes"


def test_level_grant_filters_and_enabled_reports(make: Make) -> None:
    default = make("echo")
    assert default.call("debug_enabled", b"") == b"0"  # default min level is info
    verbose = make("echo", grants={"log": {"level": "debug"}})
    assert verbose.call("debug_enabled", b"") == b"1"
    quiet = make("echo", grants={"log": {"level": "error"}})
    quiet.call("log", b"dropped")  # info < error
    assert quiet.log.lines() == []


@pytest.mark.parametrize(("opts", "match"), [({"level": "loud"}, "must be one of"),
                                             ({"colour": "red"}, "unknown option")])
def test_bad_log_grant(make: Make, opts: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        make("echo", grants={"log": opts})


def test_ring_buffer_keeps_last_1000(make: Make) -> None:
    rt = make("echo", limits=Limits(max_log_lines_per_s=100_000))
    for i in range(1005):
        rt.call("log", str(i).encode())
    lines = rt.log.lines()
    assert len(lines) == 1000 and lines[0].message == "5" and lines[-1].message == "1004"
    assert [ln.message for ln in rt.log.lines(limit=2)] == ["1003", "1004"]


def test_a_new_runtime_starts_with_its_whole_line_budget(make: Make) -> None:
    # The runtime sets its limits on a log made with the defaults (500 lines/s): the bucket
    # must start at the configured budget, not at the default's, whatever the call speed.
    rt = make("echo", limits=Limits(max_log_lines_per_s=2000))
    for i in range(1500):
        rt.call("log", str(i).encode())
    assert rt.log.dropped == 0 and len(rt.log.lines()) == 1000


def test_huge_message_is_cut(make: Make) -> None:
    rt = make("echo")
    rt.call("log", b"x" * 100_000)
    msg = rt.log.lines()[-1].message
    assert msg.startswith("x" * 65536) and msg.endswith("[34464 bytes cut]")


def test_builtin_hook_returns_the_builtins_log_first() -> None:
    caps = builtin.capabilities(app=None)
    assert [c.name for c in caps][:2] == ["log", "config"]
    assert caps[0].namespace == "omnicore:log" and caps[0].default_grant


TINY_LINES = wasmtime.wat2wasm("""(module
  (import "omnicore:log" "write" (func $write (param i32 i32 i32)))
  (memory (export "memory") 2)
  (data (i32.const 16) "8 bytes!")
  (func (export "omni_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "omni_free") (param i32 i32))
  (func (export "spam") (param i32 i32) (result i64)
    (loop $l (call $write (i32.const 2) (i32.const 16) (i32.const 8)) (br $l))
    (i64.const 0))
  (func (export "ok") (param i32 i32) (result i64) (i64.const 0)))""")


@pytest.mark.parametrize("rate", [None, 50])
def test_tiny_lines_are_bounded_in_records_per_second(
        make: Make, caplog: pytest.LogCaptureFixture, rate: int | None) -> None:
    # 8-byte lines for 500 ms: far under the byte budget; it sent 7,456 records to Python
    # logging from one call when only bytes were counted.
    limits = Limits(timeout_ms=500) if rate is None else Limits(timeout_ms=500,
                                                                max_log_lines_per_s=rate)
    rt = make(TINY_LINES, limits=limits)
    caplog.set_level(logging.INFO, logger="omnicore.plugin")
    start = time.monotonic()
    with pytest.raises(DeadlineExceeded):
        rt.call("spam", b"")
    elapsed = time.monotonic() - start
    per_s = limits.max_log_lines_per_s
    assert flush()
    records = [r for r in caplog.records if r.name.startswith("omnicore.plugin")]
    assert len(records) <= per_s * (1 + elapsed) + 2, len(records)
    assert rt.log.dropped > 0
    assert rt.call("ok", b"") == b""
    time.sleep(1.1)  # the drop is reported with the next line admitted, once a second
    rt.log.write("info", "after")
    notes = [ln.message for ln in rt.log.lines() if "dropped" in ln.message]
    assert 1 <= len(notes) <= 2  # reported, at most once a second
    assert f"{per_s} lines/s (limits.max_log_lines_per_s)" in notes[-1]


def test_a_loop_of_filtered_lines_ends_at_the_deadline(make: Make,
                                                       cpu_contention: None) -> None:
    # Lines below the grant's level are work too: the deadline holds on that path as well.
    rt = make(TINY_LINES, grants={"log": {"level": "error"}}, limits=Limits(timeout_ms=300))

    def spam() -> None:
        with pytest.raises(DeadlineExceeded):
            rt.call("spam", b"")

    assert fastest(spam) < 0.3 + 1.5
    assert rt.log.written == 0 and rt.log.dropped == 0
    assert rt.call("ok", b"") == b""
