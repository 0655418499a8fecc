"""The walk-through of docs/guides/capabilities/walkthrough.md, for real: the digest examples
under ``omnicore run``, restarted.

Both digests (Rust and JS, built from plugins/digest by their toolchains) count the events they
see in kv, publish a summary on a schedule, and see each other's summaries. The test drives a
real ``omnicore run`` child process, stops it, starts it again, and reads the app's storage
from outside as ``omnicore kv`` does: the counts and the summary numbering go on where they
were, and an operator's task queued while the host was down runs after the restart.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from omnicore.cli import main
from omnicore.storage import open_storage
from omnicore.toolchains import build
from tests.hosts import Host
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[1]
DIGESTS = ("digest-rust", "digest-js")


@pytest.fixture(scope="module")
def appdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    app = tmp_path_factory.mktemp("digest-app")
    (app / "plugins").mkdir()
    for lang in ("rust", "js"):
        build(ROOT / "plugins" / "digest" / lang, app / "plugins")
    # The operator's schedule of the manifest's name ("summary", its handler's) replaces it:
    # one schedule of `summary` each, whose fires never overlap (two schedules of one handler
    # would run it twice at once, and the later call's `last` could be written first).
    fast = {name: [{"name": "summary", "handler": "summary", "every": "1s"}] for name in DIGESTS}
    (app / "omnicore.yaml").write_text(json.dumps({
        "name": "digest-demo", "data_dir": "data", "plugins_dir": "plugins",
        "console": {"enabled": False}, "log": {"format": "json"},
        "plugins": {name: {"grants": ["kv", "tasks", "events"]} for name in DIGESTS},
        "capabilities": {"tasks": {"poll_s": 0.2, "schedules": fast}}}))
    return app


def cli(*args: str) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def stored(appdir: Path, plugin: str, key: str) -> bytes | None:
    store = open_storage(appdir / "data")
    try:
        return store.kv(plugin).get(key)
    finally:
        store.close()


def count(appdir: Path, plugin: str, key: str) -> int:
    return int(stored(appdir, plugin, key) or 0)


@pytest.fixture
def serve(appdir: Path) -> Iterator[Callable[[], Host]]:
    running: list[Host] = []

    def start() -> Host:
        running.append(Host(appdir).start())
        return running[-1]

    yield start
    for host in running:
        host.stop(signal.SIGKILL)


def stop(host: Host) -> None:
    assert host.stop() == 0, host.text


def test_the_digests_count_schedule_and_react_across_a_restart(
        appdir: Path, serve: Callable[[], Host]) -> None:
    first = serve()
    # Each digest's schedule publishes a summary; the other one receives it and counts it.
    eventually(lambda: count(appdir, "digest-js", "topic:plugin.digest-rust.summary") >= 2 and
               count(appdir, "digest-rust", "topic:plugin.digest-js.summary") >= 2,
               "both digests to see two of the other's summaries", watch=[first])
    stop(first)
    before = {name: {key: count(appdir, name, key) for key in ("seen", "summaries")}
              for name in DIGESTS}
    last_before = {name: stored(appdir, name, "last") for name in DIGESTS}
    assert all(b["summaries"] >= 2 and b["seen"] >= 2 for b in before.values()), before
    assert count(appdir, "digest-rust", "topic:plugin.digest-rust.summary") == 0  # not its own

    # While the host is down an operator queues a note; it is durable, so it waits.
    assert cli("jobs", "enqueue", "digest-js", "note", '{"text": "hello"}',
               "--app", str(appdir)).startswith("job ")
    second = serve()
    # The first summary each digest keeps after the restart (a summary's call is cut between
    # its count and its `last` when it outlives the plugin's deadline on a loaded machine, or
    # the stop: the next one is kept). Polled every 10 ms, a schedule of 1 s apart: a
    # numbering that started over would be seen at 1 or 2, never past the count before.
    after: dict[str, dict[str, int]] = {}

    def summarised() -> bool:
        for name in DIGESTS:
            last = stored(appdir, name, "last")
            if name not in after and last is not None and last != last_before[name]:
                after[name] = json.loads(last)
        return len(after) == len(DIGESTS)

    eventually(summarised, "a summary from each digest after the restart", every=0.01,
               watch=[second])
    eventually(lambda: count(appdir, "digest-rust", "topic:plugin.digest-js.note") == 1,
               "the queued note to reach digest-rust after the restart", watch=[second])
    stop(second)
    for name in DIGESTS:
        # The numbering went on from before the restart instead of starting over at 1.
        assert after[name]["summary"] > before[name]["summaries"], (name, after, before)
        assert after[name]["seen"] >= before[name]["seen"]
        # A schedule never runs its handler twice at once (overlap: skip), so no summary
        # begun before that one is written after it: `last` only goes forward.
        last = json.loads(cli("kv", "get", name, "last", "--app", str(appdir)))
        assert last["summary"] >= after[name]["summary"], (name, last, after)
    assert "plugin.digest-js.note" in cli("kv", "list", "digest-rust", "topic:",
                                          "--app", str(appdir))
