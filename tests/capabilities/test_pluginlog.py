"""PluginLog on both rings (C, sandbox/_logring.c, and Python, sandbox/logring.py): budgets,
the ring, and forwarding to Python logging (sandbox/logforward.py), including hostile floods."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicore.sandbox.logforward import Forwarder
from omnicore.sandbox.pluginlog import NATIVE, PluginLog, PyPluginLog, flush

Impl = type[PyPluginLog]
IMPLS = [pytest.param(PyPluginLog, id="python")]
if NATIVE:
    IMPLS.append(pytest.param(PluginLog, id="c"))
CALLPATHS = ["python"] + (["native"] if NATIVE else [])
UNLIMITED = {"rate_lines": 10**9, "rate_bytes": 10**12}


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> Impl:
    cls: Impl = request.param
    return cls


def test_the_chosen_ring_is_the_one_asked_for() -> None:
    # scripts/dev runs this folder with OMNICORE_CALLPATH=native and =python: a C ring that
    # failed to build or to load fails here, not silently on the slower ring.
    if os.environ.get("OMNICORE_CALLPATH", "auto") == "python":
        assert not NATIVE and PluginLog is PyPluginLog
    else:
        from omnicore.sandbox import _logring  # type: ignore[attr-defined]

        assert NATIVE, "the C log ring is not built: run scripts/dev setup"
        assert issubclass(PluginLog, _logring.Ring)


def test_an_unknown_choice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    from omnicore.sandbox import pluginlog

    monkeypatch.setenv("OMNICORE_CALLPATH", "fast")
    with pytest.raises(RuntimeError, match="use auto, native or python"):
        pluginlog._native_ring()


def test_levels_capacity_and_names(impl: Impl) -> None:
    log = impl("p", capacity=3, min_level="trace")
    for level in (-5, 0, 2, 3, 99, "warning", 10**30, -(10**30)):
        log.write(level, "m")
    # -5 clamps to trace, 99 to error; "warning" is an alias; capacity keeps the last 3
    assert [ln.level for ln in log.lines()] == ["warn", "error", "trace"]
    assert log.written == 8 and len(log) == 3
    assert not impl("p").enabled(1) and impl("p").enabled(2) and impl("p").enabled("error")
    with pytest.raises(ValueError):
        impl("p", min_level="chatty")
    with pytest.raises(ValueError, match="unknown log level"):
        log.write("chatty", "m")
    with pytest.raises(TypeError):
        log.write(2, b"bytes are not text")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        impl("p", capacity=0)
    assert log.written == 8  # a refused call keeps nothing


def test_since_returns_only_lines_after_the_mark(impl: Impl) -> None:
    log = impl("p", capacity=3)
    log.write("info", "before")
    mark = log.written
    assert log.since(mark) == []
    for i in range(5):
        log.write("error", f"after {i}")
    # Only what the ring buffer still holds can be returned.
    assert [line.message for line in log.since(mark)] == ["after 2", "after 3", "after 4"]
    assert [line.message for line in log.since(log.written - 1)] == ["after 4"]
    assert [line.message for line in log.lines(2)] == ["after 3", "after 4"]
    log.write("debug", "dropped below min level")
    assert log.written == 6


class Shout(str):
    """A str subclass: kept as its plain text."""


@pytest.mark.parametrize("text", ["plain ascii", "é latin-1 é", "€ BMP €" * 9, "\U0001F600" * 40,
                                  ""])
def test_a_line_costs_its_getsizeof_plus_overhead(impl: Impl, text: str) -> None:
    log = impl("p")
    log.write(2, text)
    log.write(2, Shout(text))
    assert log.buffered_bytes == 2 * (sys.getsizeof(text) + impl.LINE_OVERHEAD)
    assert [type(ln.message) for ln in log.lines()] == [str, str]
    assert [ln.message for ln in log.lines()] == [text, text]


def test_the_records_budget_refills(impl: Impl) -> None:
    log = impl("p", rate_lines=5)
    start = time.monotonic()
    kept = [log.write("info", "x") for _ in range(7)]
    elapsed = time.monotonic() - start
    assert kept[:5] == [True] * 5 and sum(kept) <= 5 + elapsed * 5  # the burst, then the rate
    assert log.dropped == 7 - sum(kept)
    time.sleep(0.5)  # 2.5 lines' worth
    assert log.write("info", "y") and log.dropped == 7 - sum(kept)


def test_dropped_lines_are_reported_in_one_note(impl: Impl) -> None:
    log = impl("p", rate_lines=2, rate_bytes=10**6)
    kept = sum(log.write("info", "x") for _ in range(6))  # 2 (more only on a stalled machine)
    log.drop(3)  # a caller out of budget (WASI output) counts its lines here too
    dropped = 6 - kept + 3
    assert log.dropped == dropped
    time.sleep(0.6)  # one line's worth
    assert log.write("info", "after")
    note, after = log.lines()[-2:]
    assert after.message == "after" and note.level == "warn"
    assert note.message == (f"[omnicore] {dropped} log line(s) dropped: over this plugin's log "
                            "budget of 1000000 bytes/s (limits.max_log_bytes_per_s) or 2 lines/s "
                            "(limits.max_log_lines_per_s)")
    assert log.written == kept + 2  # the lines, the note and "after"
    assert (log.rate_bytes, log.rate_lines) == (10**6, 2)


def test_a_fresh_log_takes_its_configured_budget_whole(impl: Impl) -> None:
    log = impl("p")  # made with the default 500 lines/s, then configured (as runtimes do)
    log.rate_lines = 2000
    assert all(log.write("info", "x") for _ in range(1500)) and log.dropped == 0


@pytest.mark.parametrize("text", ["8 bytes!", "x" * 4000, "\U0001F600" * 4000])
def test_a_flood_is_bounded_by_the_byte_budget(impl: Impl, text: str) -> None:
    cost = sys.getsizeof(text) + impl.LINE_OVERHEAD
    rate = 20 * cost
    log = impl("p", rate_bytes=rate, rate_lines=10**9)
    start = time.monotonic()
    kept = sum(log.write("info", text) for _ in range(5000))
    elapsed = time.monotonic() - start
    assert 20 <= kept <= 20 + elapsed * 20 + 1  # the burst, plus what refilled meanwhile
    assert log.dropped == 5000 - kept and log.buffered_bytes <= log.max_bytes


def test_a_flood_of_tiny_lines_is_bounded_by_the_line_budget(impl: Impl) -> None:
    log = impl("p", rate_lines=50)
    start = time.monotonic()
    kept = sum(log.write("info", "") for _ in range(20_000))
    elapsed = time.monotonic() - start
    assert 50 <= kept <= 50 + elapsed * 50 + 1
    assert log.dropped == 20_000 - kept


def test_lines_far_beyond_capacity_and_bytes(impl: Impl) -> None:
    log = impl("p", capacity=10, max_bytes=100_000, **UNLIMITED)  # type: ignore[arg-type]
    for i in range(50_000):
        log.write("info", str(i))
    assert [ln.message for ln in log.lines()] == [str(i) for i in range(49_990, 50_000)]
    assert log.written == 50_000 and len(log) == 10
    wide = "\U0001F600" * 16_000  # 64 KiB of 4-byte characters: one fits in 100 KB, not two
    for _ in range(100):
        log.write("info", wide)
        assert log.buffered_bytes <= log.max_bytes
    assert [ln.message for ln in log.lines()] == [wide]
    log.write("info", wide * 2)  # alone over max_bytes: not kept at all
    assert log.buffered_bytes == 0 and len(log) == 0 and log.lines() == []


def test_the_ring_grows_to_its_capacity_keeping_order(impl: Impl) -> None:
    # The C ring starts with a few slots and doubles them as lines come (a plugin that logs
    # little does not pay for 1,000): every read and mark must see the same lines as a ring
    # allocated whole, across each growth and each wrap of the ring.
    log = impl("p", capacity=100, **UNLIMITED)  # type: ignore[arg-type]
    for i in range(10):
        log.write("info", str(i))
    mark = log.written
    for i in range(10, 40):  # past 16 and 32 slots
        log.write("info", str(i))
    assert [ln.message for ln in log.since(mark)] == [str(i) for i in range(10, 40)]
    for i in range(40, 250):  # up to 100, then around the ring
        log.write("info", str(i))
        if i in (63, 64, 99, 100, 101, 177):
            assert [ln.message for ln in log.lines()] == [str(n) for n in
                                                        range(max(0, i - 99), i + 1)]
    assert [ln.message for ln in log.lines(5)] == [str(i) for i in range(245, 250)]
    assert [ln.message for ln in log.since(240)] == [str(i) for i in range(240, 250)]
    assert len(log) == 100 and log.written == 250
    # Growing after the oldest lines left by the byte budget (the ring no longer starts at
    # its first slot): five long lines, then short ones push them out and fill past 16 slots.
    small = sys.getsizeof("s00") + impl.LINE_OVERHEAD
    log = impl("p", capacity=100, max_bytes=40 * small, **UNLIMITED)  # type: ignore[arg-type]
    for _ in range(5):
        log.write("info", "x" * 1000)
    for i in range(35):
        log.write("info", f"s{i:02d}")
    assert [ln.message for ln in log.lines()] == [f"s{i:02d}" for i in range(35)]


def test_lines_waiting_for_the_forwarder_survive_the_ring_growing(impl: Impl,
                                                                   gate: _Gate) -> None:
    gate.go.clear()
    log = impl("slowpoke", capacity=300, **UNLIMITED)  # type: ignore[arg-type]
    log.write("info", "line 0")
    assert gate.entered.wait(30)  # the forwarder holds line 0; the rest wait in the ring
    for i in range(1, 300):
        log.write("info", f"line {i}")
    gate.go.set()
    assert flush(30)
    assert _texts(gate) == [f"line {i}" for i in range(300)]


class _Gate(logging.Handler):
    """A handler that blocks until its gate opens (a stuck stream, a dead log shipper)."""

    def __init__(self) -> None:
        super().__init__()
        self.go = threading.Event()
        self.go.set()
        self.entered = threading.Event()
        self.got: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.entered.set()
        self.go.wait(60)
        self.got.append(record)


@pytest.fixture
def gate() -> Iterator[_Gate]:
    handler = _Gate()
    logger = logging.getLogger("omnicore.plugin.slowpoke")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    handler.go.set()
    flush(30)
    logger.removeHandler(handler)


def _texts(handler: _Gate) -> list[str]:
    return [r.getMessage() for r in handler.got]


def test_a_stuck_handler_does_not_hold_the_call_and_gets_every_line_in_order(
        impl: Impl, gate: _Gate) -> None:
    gate.go.clear()
    log = impl("slowpoke")
    before = time.time()
    for i in range(10):
        log.write("info", f"line {i}")
    after = time.time()
    assert [ln.message for ln in log.lines()] == [f"line {i}" for i in range(10)]
    assert gate.got == []  # every write returned while the handler was still stuck
    gate.go.set()
    assert flush(30)
    assert _texts(gate) == [f"line {i}" for i in range(10)]
    assert all(before <= r.created <= after for r in gate.got)  # when it was said
    assert {(r.plugin, r.plugin_level) for r in gate.got} == {("slowpoke", "info")}  # type: ignore[attr-defined]


def test_a_forwarder_far_behind_is_bounded_and_counts_what_it_missed(
        impl: Impl, gate: _Gate, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(Forwarder, "MAX_PENDING", 5)  # lines in the forwarder's hand at most
    caplog.set_level(logging.WARNING, logger="omnicore.plugin")
    before = impl._forwarder.dropped
    gate.go.clear()  # the handler hangs: the forwarder is stuck in its first batch
    log = impl("slowpoke", capacity=20, **UNLIMITED)  # type: ignore[arg-type]
    log.write("info", "line 0")
    assert gate.entered.wait(30)
    for i in range(1, 1000):
        log.write("info", f"line {i}")
        assert len(log) <= 20 and log.buffered_bytes <= log.max_bytes  # nothing grows
    gate.go.set()
    assert flush(30)
    got = [int(text.split()[1]) for text in _texts(gate)]
    assert got == sorted(got) and got[0] == 0  # in order, nothing twice
    assert got[-20:] == list(range(980, 1000))  # what the ring still held went out
    assert len([n for n in got if n < 980]) <= 5  # the batch in hand, no more
    missed = impl._forwarder.dropped - before
    assert missed == 1000 - len(got)
    notes = [r.getMessage() for r in caplog.records if "never reached Python logging" in
             r.getMessage()]
    assert notes == [f"{missed} plugin log line(s) never reached Python logging: its handlers "
                     "fell so far behind that the lines left their plugins' logs first"]


@pytest.mark.parametrize("limit", [{"MAX_PENDING": 7}, {"MAX_PENDING_BYTES": 1000}])
def test_order_holds_across_batches(impl: Impl, gate: _Gate, monkeypatch: pytest.MonkeyPatch,
                                    limit: dict[str, int]) -> None:
    for name, value in limit.items():
        monkeypatch.setattr(Forwarder, name, value)
    log = impl("slowpoke", capacity=2000, **UNLIMITED)  # type: ignore[arg-type]
    for i in range(1500):
        log.write("info", f"line {i}")
    assert flush(30)
    assert _texts(gate) == [f"line {i}" for i in range(1500)]


def test_concurrent_writers_keep_each_ones_order(impl: Impl, gate: _Gate) -> None:
    log = impl("slowpoke", capacity=4000, **UNLIMITED)  # type: ignore[arg-type]
    start = threading.Barrier(4)

    def writer(name: str) -> None:
        start.wait(30)
        for i in range(1000):
            log.write("info", f"{name} {i}")

    threads = [threading.Thread(target=writer, args=(f"t{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert flush(30)
    kept = [ln.message for ln in log.lines()]
    assert log.written == 4000 and len(kept) == 4000 and _texts(gate) == kept
    for n in range(4):
        assert [m for m in kept if m.startswith(f"t{n} ")] == [f"t{n} {i}" for i in range(1000)]


def test_clear_hides_lines_but_still_forwards_them(impl: Impl, gate: _Gate) -> None:
    gate.go.clear()
    log = impl("slowpoke")
    for i in range(5):
        log.write("info", f"line {i}")
    log.clear()
    assert log.lines() == [] and len(log) == 0 and log.since(0) == []
    log.write("info", "line 5")
    assert [ln.message for ln in log.lines()] == ["line 5"]
    gate.go.set()
    assert flush(30)
    assert _texts(gate) == [f"line {i}" for i in range(6)]
    log.clear()
    assert log.buffered_bytes == 0  # forwarded and cleared: released


_AT_EXIT = """
import logging, sys, time
from omnicore.sandbox import pluginlog
assert pluginlog.NATIVE == (sys.argv[2] == "native")
class Slow(logging.FileHandler):
    def emit(self, record):
        time.sleep(0.0002)  # behind the writers when the process ends
        super().emit(record)
handler = Slow(sys.argv[1])
handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
logging.getLogger("omnicore.plugin").addHandler(handler)
logging.getLogger("omnicore.plugin").setLevel(logging.INFO)
logs = [pluginlog.PluginLog(f"p{n}", rate_lines=10**6) for n in range(3)]
for i in range(900):
    logs[i % 3].write("info", f"line {i}")
"""


@pytest.mark.parametrize("callpath", CALLPATHS)
def test_every_line_reaches_the_handlers_at_exit(tmp_path: Path, callpath: str) -> None:
    out = tmp_path / "plugin.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "OMNICORE_CALLPATH": callpath}
    done = subprocess.run([sys.executable, "-c", _AT_EXIT, str(out), callpath],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    got = out.read_text().splitlines()
    assert len(got) == 900
    for n in range(3):  # in order per plugin (plugins take turns in batches)
        assert [line for line in got if line.startswith(f"omnicore.plugin.p{n} ")] == [
            f"omnicore.plugin.p{n} line {i}" for i in range(n, 900, 3)]
