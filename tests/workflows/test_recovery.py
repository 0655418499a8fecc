"""Hosts stopping and starting under running workflows: a host that starts finds the sub-runs
that ended while no host ran, by their parent step's key (run, step, index), and completes
exactly those parent steps; a host that stops interrupts a plugin step still running at the end
of its grace and gives the step back, the attempt not counted, to run again at the next start.
A plugin step runs on its worker's thread unless its timeout is shorter than the plugin's
deadline; then the timeout still holds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import wasmtime

from omnicore import OmniApp
from omnicore.sandbox import wasmbin
from omnicore.storage import SQLiteStorage
from tests.waiting import eventually

#: The jobs' spinner (tests/jobs/test_shutdown.py): its first ``spin`` loops until interrupted.
SPINNER = Path(__file__).parents[1] / "fixtures" / "host_job_spin.wat"
#: A stop may take its grace plus one second; half a second more for a loaded machine.
SLACK_S = 1.5

Start = Callable[..., OmniApp]

CHILD = """\
format: omniflow/v1
name: child
steps:
  - {id: ok, wait: {approval: {message: "Go?"}}}
outputs: {who: "${{ inputs.who }}"}
"""

PARENT = """\
format: omniflow/v1
name: parent
steps:
  - id: sub
    uses: "workflow:child"
    for_each: inputs.names
    parallelism: 3
    with: {who: "${{ item }}"}
outputs: {all: "${{ steps.sub.output.map(o, o.who) }}"}
"""


def test_a_sub_run_that_ended_while_no_host_ran_completes_only_its_own_parent_item(
        wf_app: Start) -> None:
    files = {"child.yaml": CHILD, "parent.yaml": PARENT}
    app = wf_app(files)
    run = app.workflows.start("parent", {"names": ["Ada", "Bo", "Cy"]})
    children = eventually(lambda: (found := app.workflows.runs("child")) and len(found) == 3
                          and all(app.workflows.store.step(c.id, "ok") is not None
                                  and app.workflows.store.step(c.id, "ok").state == "waiting"
                                  for c in found) and found, "three waiting sub-runs")
    eventually(lambda: all(app.workflows.store.step(run.id, "sub", i).state == "waiting"
                           for i in range(3)), "the items waiting on their sub-runs")
    app.stop()

    # While no host runs, item 1's sub-run ends behind the engine's back (another process
    # writing the rows): nothing completes its parent item.
    storage = SQLiteStorage(app.data_dir / "omnicore.db")
    store = storage.workflows
    by_item = {c.parent_index: c for c in children}
    ended = by_item[1]
    assert store.complete(ended.id, "ok", -1, owner=None, state="succeeded", output=b"{}",
                          expect=("waiting",), actor="test")
    assert store.finish_run(ended.id, "succeeded", outputs={"who": "Bo"})
    assert store.step(run.id, "sub", 1).state == "waiting"  # type: ignore[union-attr]
    storage.close()

    again = wf_app(files)
    eventually(lambda: again.workflows.store.step(run.id, "sub", 1).state == "succeeded",
               "the recovered item")
    item = again.workflows.store.step(run.id, "sub", 1)
    assert item is not None and item.output == {"who": "Bo"}
    # Its siblings (same run and step, other indexes) still wait on their own sub-runs.
    assert [again.workflows.store.step(run.id, "sub", i).state  # type: ignore[union-attr]
            for i in (0, 2)] == ["waiting", "waiting"]
    assert again.workflows.get_run(run.id).state == "running"
    for i in (0, 2):
        again.workflows.approve(by_item[i].id, "ok", "tester")
    done = again.workflows.wait(run.id, 30)
    assert done.state == "succeeded", done.error
    assert done.outputs == {"all": ["Ada", "Bo", "Cy"]}


SPIN = """\
format: omniflow/v1
name: spin
steps:
  - {id: wasm, uses: plugin:spinner/spin}
  - {id: host, uses: plugin:spinner/spin_host}
outputs: {done: true}
"""


def spinner_app(make_app: Callable[..., OmniApp], tmp_path: Path,
                workflows: dict[str, str]) -> Callable[[], OmniApp]:
    """A factory of started apps on one folder: the spinner (120 s deadline) and ``workflows``."""
    (tmp_path / "wf" / "plugins").mkdir(parents=True, exist_ok=True)
    (tmp_path / "wf" / "workflows").mkdir(exist_ok=True)
    for name, text in workflows.items():
        (tmp_path / "wf" / "workflows" / name).write_text(text)
    (tmp_path / "wf" / "plugins" / "spinner.wasm").write_bytes(wasmbin.set_custom_section(
        wasmtime.wat2wasm(SPINNER.read_text()), "omnicore.manifest",
        json.dumps({"name": "spinner"}).encode()))
    overrides = {"sandbox": {"watch": False},
                 "workflows": {"dir": str(tmp_path / "wf" / "workflows"), "poll_s": 0.1,
                               "lease_s": 2},
                 "plugins": {"spinner": {"grants": ["kv"],
                                         "limits": {"timeout_ms": 120000}}}}

    def start() -> OmniApp:
        app = make_app("wf", builtin_extensions=None, overrides=overrides)
        app.start()
        return app

    return start


def new_threads(earlier: set[threading.Thread], prefix: str) -> list[str]:
    return [t.name for t in set(threading.enumerate()) - earlier if t.name.startswith(prefix)]


def test_a_stop_interrupts_a_running_plugin_step_and_it_runs_again_uncounted(
        make_app: Callable[..., OmniApp], tmp_path: Path) -> None:
    start = spinner_app(make_app, tmp_path, {"spin.yaml": SPIN})
    earlier = set(threading.enumerate())
    app = start()
    seen: list[str] = []
    app.events.subscribe("workflow.*", lambda e: seen.append(getattr(e, "state", "")))
    # Both steps are first deliveries: one loops in wasm, one in host calls; only the
    # interrupt ends them.
    run = app.workflows.start("spin")
    kv = app.kv.for_plugin("spinner")
    eventually(lambda: kv.get("spin_runs") == b"1" and kv.get("spin_host_runs") == b"1",
               "both plugin steps to spin")
    # The step timeout (300 s) outlasts the plugin's deadline: each step is one thread, its
    # worker's, with no call thread beside it.
    assert new_threads(earlier, "omnicore-wf-call") == []
    grace = 0.5
    sent = time.monotonic()
    app.workflows.stop(grace)   # the workflows' own stop, without the app's interrupt
    took = time.monotonic() - sent
    assert grace <= took < grace + SLACK_S, f"stop took {took:.2f}s"
    # The spinning calls were ended, not abandoned: no step thread is left running.
    eventually(lambda: not new_threads(earlier, "omnicore-wf-"), "the step threads to end",
               timeout=10)
    app.stop(grace=0)

    storage = SQLiteStorage(app.data_dir / "omnicore.db")
    try:
        for sid in ("wasm", "host"):
            row = storage.workflows.step(run.id, sid)
            # Given back, not failed: queued, no attempt counted, no error, no retry.
            assert row is not None and row.state == "queued" and row.attempt == 0, sid
            assert row.error is None, sid
            kinds = [h.kind for h in storage.workflows.history(run.id) if h.step == sid]
            assert "step.failed" not in kinds and "step.retrying" not in kinds, sid
        assert storage.workflows.run(run.id).state == "running"  # type: ignore[union-attr]
    finally:
        storage.close()
    assert "failed" not in seen

    again = start()
    done = again.workflows.wait(run.id, 60)
    assert done.state == "succeeded", done.error
    kv = again.kv.for_plugin("spinner")
    for sid, handler in (("wasm", "spin"), ("host", "spin_host")):
        row = again.workflows.store.step(run.id, sid)
        assert row is not None and row.attempt == 1, sid
        assert kv.get(f"{handler}_runs") == b"2" and kv.get(f"{handler}_done") == b"1"


SHORT = """\
format: omniflow/v1
name: short
steps:
  - {id: wasm, uses: plugin:spinner/spin, timeout: 1s, retry: {max_attempts: 1}}
"""


def test_a_step_timeout_shorter_than_the_plugin_deadline_still_ends_the_step(
        make_app: Callable[..., OmniApp], tmp_path: Path) -> None:
    app = spinner_app(make_app, tmp_path, {"short.yaml": SHORT})()
    sent = time.monotonic()
    run = app.workflows.wait(app.workflows.start("short").id, 60)
    took = time.monotonic() - sent
    assert run.state == "failed"
    row = app.workflows.store.step(run.id, "wasm")
    assert row is not None and row.error == "TimeoutError: step wasm timed out after 1s"
    assert took < 1 + 30, f"the 1 s step timeout took {took:.1f}s (the deadline is 120 s)"
