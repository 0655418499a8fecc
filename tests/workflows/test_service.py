"""The engine with real plugins built from the SDKs: runs, retries, restart, approvals,
concurrency, for_each, sub-workflows, limits, triggers."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from omnicore import OmniApp
from omnicore.capabilities.events import PluginEvent
from omnicore.workflows import InputInvalid, RunStateError
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]
Start = Callable[..., OmniApp]


def step(app: OmniApp, run_id: int, sid: str, index: int = -1) -> Any:
    found = app.workflows.store.step(run_id, sid, index)
    assert found is not None, sid
    return found


def state_of(app: OmniApp, run_id: int, sid: str) -> str | None:
    found = app.workflows.store.step(run_id, sid)
    return None if found is None else found.state


def count(app: OmniApp) -> int:
    raw = app.kv.for_plugin("counter-rust").get("count")
    return int(raw) if raw else 0


HEAD = "format: omniflow/v1\n"


def test_a_run_across_three_plugins_records_every_step(wf_app: Start) -> None:
    text = (ROOT / "examples" / "workflows" / "text-report.yaml").read_text()
    app = wf_app({"text-report.yaml": text})
    run = app.workflows.start("text-report", {"name": "Ada Lovelace"}, started_by="tester")
    run = app.workflows.wait(run.id, 30)
    assert run.state == "succeeded", run.error
    assert run.outputs == {"message": "Hello, Ada Lovelace!", "words": 3,
                           "total_words_counted": 3}
    assert count(app) == 3
    stats = step(app, run.id, "stats")
    assert stats.input == {"text": "Hello, Ada Lovelace!"} and stats.attempt == 1
    kinds = [(h.kind, h.step) for h in app.workflows.store.history(run.id)]
    assert kinds[0] == ("run.created", None) and kinds[-1] == ("run.succeeded", None)
    assert ("step.succeeded", "count") in kinds
    assert app.workflows.store.history(run.id)[0].actor == "tester"


def test_bad_inputs_are_refused_naming_the_field(wf_app: Start) -> None:
    app = wf_app({"t.yaml": (ROOT / "examples" / "workflows" / "text-report.yaml").read_text()})
    with pytest.raises(InputInvalid) as info:
        app.workflows.start("text-report", {"name": 42})
    assert info.value.field == "name"
    with pytest.raises(InputInvalid) as info:
        app.workflows.start("text-report", {})
    assert info.value.field == "name"
    assert app.workflows.runs() == []


FLAKY = HEAD + """\
name: flaky
defaults: {retry: {max_attempts: 2, initial: 10ms, jitter: false}}
steps:
  - id: greet
    uses: plugin:greeter-rust/greet
    with: {name: Ada}
  - id: stats
    uses: plugin:textstats-rust/analyze
    with: WITH
  - id: count
    uses: plugin:counter-rust/count
    with: {by: "${{ steps.stats.output.words }}"}
on_failure:
  - id: note
    uses: plugin:greeter-rust/greet
    with: {name: "${{ run.error }}"}
outputs: {words: "${{ steps.stats.output.words }}"}
"""


def test_retries_then_fails_then_restarts_from_the_failed_step_on_the_latest_version(
        wf_app: Start) -> None:
    app = wf_app({"flaky.yaml": FLAKY.replace("WITH", '"not an object"')})
    run = app.workflows.wait(app.workflows.start("flaky").id, 30)
    assert run.state == "failed"
    assert run.error is not None and run.error.startswith("step stats failed: GuestError")
    stats = step(app, run.id, "stats")
    assert stats.state == "failed" and stats.attempt == 2
    assert step(app, run.id, "count").state == "skipped"
    note = step(app, run.id, "note")
    assert note.state == "succeeded" and "step stats failed" in note.output["message"]
    kinds = [h.kind for h in app.workflows.store.history(run.id) if h.step == "stats"]
    assert kinds == ["step.queued", "step.started", "step.retrying", "step.started",
                     "step.failed"]
    greet_before = step(app, run.id, "greet")
    pinned = run.version

    # Fix the file; the folder is read again and the new version serves new runs.
    (app.workflows.settings.dir / "flaky.yaml").write_text(
        FLAKY.replace("WITH", '{text: "${{ steps.greet.output.message }}"}'))
    eventually(lambda: app.workflows.entries.get("flaky").version != pinned, "the new version")
    assert app.workflows.cancel(run.id, "tester") is False  # it has ended
    again = app.workflows.restart(run.id, "tester", latest=True)
    assert again.version != pinned and again.restarts == 1
    run = app.workflows.wait(run.id, 30)
    assert run.state == "succeeded", run.error
    assert run.outputs == {"words": 2}
    assert step(app, run.id, "greet") == greet_before      # kept, not run again
    assert count(app) == 2                                   # the count step ran once
    assert any(h.kind == "run.restarted" and h.actor == "tester"
               for h in app.workflows.store.history(run.id))
    with pytest.raises(RunStateError, match="only a failed or cancelled run"):
        app.workflows.restart(run.id, "tester")


APPROVAL = HEAD + """\
name: approve-me
steps:
  - id: greet
    uses: plugin:greeter-rust/greet
    with: {name: "${{ inputs.name }}"}
  - id: ok
    needs: [greet]
    wait: {approval: {message: "Count it?"}}
  - id: count
    needs: [ok]
    uses: plugin:counter-rust/count
    with: {by: 1}
outputs: {by: "${{ steps.ok.output.by }}"}
"""


def test_an_approval_waits_and_records_who_decided(wf_app: Start) -> None:
    app = wf_app({"a.yaml": APPROVAL})
    run = app.workflows.start("approve-me", {"name": "x"})
    eventually(lambda: state_of(app, run.id, "ok") == "waiting", "the approval")
    assert app.workflows.get_run(run.id).state == "running" and count(app) == 0
    with pytest.raises(RunStateError):
        app.workflows.approve(run.id, "greet", "alice")
    decided = app.workflows.approve(run.id, "ok", "alice", comment="fine")
    assert decided.decided_by == "alice" and decided.decided_at is not None
    done = app.workflows.wait(run.id, 30)
    assert done.state == "succeeded" and done.outputs == {"by": "alice"} and count(app) == 1

    second = app.workflows.start("approve-me", {"name": "y"})
    eventually(lambda: state_of(app, second.id, "ok") == "waiting", "the approval")
    app.workflows.approve(second.id, "ok", "bob", approve=False, comment="no")
    rejected = app.workflows.wait(second.id, 30)
    assert rejected.state == "failed" and "rejected by bob: no" in (rejected.error or "")
    assert step(app, second.id, "count").state == "skipped" and count(app) == 1


@pytest.mark.parametrize("mode", ["queue", "skip", "cancel_running"])
def test_concurrency_modes(wf_app: Start, mode: str) -> None:
    text = APPROVAL.replace("name: approve-me", "name: approve-me\nconcurrency: "
                            f"{{key: '${{{{ inputs.name }}}}', limit: 1, on_conflict: {mode}}}")
    app = wf_app({"a.yaml": text})
    first = app.workflows.start("approve-me", {"name": "k"})
    eventually(lambda: state_of(app, first.id, "ok") == "waiting", "the first run to wait")
    other_key = app.workflows.start("approve-me", {"name": "other"})
    assert other_key.state == "running"            # another key is not limited
    second = app.workflows.start("approve-me", {"name": "k"})
    if mode == "queue":
        assert second.state == "queued"
        assert app.workflows.store.steps(second.id) == []
        app.workflows.approve(first.id, "ok", "alice")
        assert app.workflows.wait(first.id, 30).state == "succeeded"
        eventually(lambda: state_of(app, second.id, "ok") == "waiting", "the queued run to start")
    elif mode == "skip":
        assert second.state == "skipped"
        assert app.workflows.get_run(first.id).state == "running"
    else:
        assert second.state == "running"
        cancelled = app.workflows.get_run(first.id)
        assert cancelled.state == "cancelled" and "newer run" in (cancelled.error or "")
        assert step(app, first.id, "ok").state == "cancelled"


def test_concurrency_keys_hold_under_load(wf_app: Start) -> None:
    text = APPROVAL.replace("name: approve-me", "name: approve-me\nconcurrency: "
                            "{key: '${{ inputs.name }}', limit: 2, on_conflict: queue}")
    app = wf_app({"a.yaml": text})
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(8) as pool:
        runs = list(pool.map(lambda i: app.workflows.start("approve-me", {"name": f"k{i % 2}"}),
                             range(20)))
    for key in ("k0", "k1"):
        mine = [r for r in runs if r.inputs["name"] == key]
        assert sum(r.state == "running" for r in mine) == 2
        assert sum(r.state == "queued" for r in mine) == 8


FAN = HEAD + """\
name: fan
inputs: {type: object, properties: {names: {type: array}}}
steps:
  - id: greet
    for_each: inputs.names
    parallelism: 3
    uses: plugin:greeter-rust/greet
    with: {name: "${{ item }} #${{ index }}"}
outputs: {all: "${{ steps.greet.output.map(g, g.message) }}"}
"""


def test_for_each_keeps_the_order_and_its_parallelism(wf_app: Start) -> None:
    app = wf_app({"fan.yaml": FAN}, overrides={"workflows": {"workers": 6}})
    names = [f"n{i}" for i in range(12)]
    run = app.workflows.wait(app.workflows.start("fan", {"names": names}).id, 60)
    assert run.state == "succeeded", run.error
    assert run.outputs == {"all": [f"Hello, n{i} #{i}!" for i in range(12)]}
    active = peak = 0
    for h in app.workflows.store.history(run.id):
        if h.step == "greet" and h.index is not None and h.index >= 0:
            if h.kind == "step.started":
                active += 1
            elif h.kind in ("step.succeeded", "step.failed"):
                active -= 1
            peak = max(peak, active)
    assert 1 <= peak <= 3


def test_for_each_over_nothing_succeeds_with_an_empty_list(wf_app: Start) -> None:
    app = wf_app({"fan.yaml": FAN})
    run = app.workflows.wait(app.workflows.start("fan", {"names": []}).id, 30)
    assert run.state == "succeeded" and run.outputs == {"all": []}


def test_a_sub_workflow_runs_as_a_step(wf_app: Start) -> None:
    child = HEAD + """\
name: child
steps: [{id: g, uses: plugin:greeter-rust/greet, with: {name: "${{ inputs.who }}"}}]
outputs: {said: "${{ steps.g.output.message }}"}
"""
    parent = HEAD + """\
name: parent
steps:
  - {id: sub, uses: "workflow:child", with: {who: Grace}}
  - {id: echo, uses: plugin:greeter-rust/greet, with: {name: "${{ steps.sub.output.said }}"}}
outputs: {final: "${{ steps.echo.output.message }}"}
"""
    app = wf_app({"child.yaml": child, "parent.yaml": parent})
    run = app.workflows.wait(app.workflows.start("parent").id, 30)
    assert run.state == "succeeded", run.error
    assert run.outputs == {"final": "Hello, Hello, Grace!!"}
    sub = [r for r in app.workflows.runs("child")]
    assert len(sub) == 1 and sub[0].parent_run == run.id and sub[0].started_by == \
        f"run {run.id}"


def test_an_output_over_the_limit_fails_the_run_and_keeps_earlier_outputs(
        wf_app: Start) -> None:
    text = HEAD + """\
name: big
steps:
  - {id: small, uses: plugin:greeter-rust/greet, with: {name: A}}
  - {id: large, uses: plugin:greeter-rust/greet, with: {name: "${{ inputs.name }}"},
     needs: [small], retry: {max_attempts: 3}}
"""
    app = wf_app({"big.yaml": text}, overrides={"workflows": {"max_output_bytes": 200}})
    run = app.workflows.wait(app.workflows.start("big", {"name": "x" * 300}).id, 30)
    assert run.state == "failed"
    large = step(app, run.id, "large")
    assert large.attempt == 1  # no retry can make it smaller
    assert "over workflows.max_output_bytes (200)" in (large.error or "")
    assert step(app, run.id, "small").output == {"message": "Hello, A!"}


def test_large_outputs_are_stored_once_by_reference(wf_app: Start) -> None:
    app = wf_app({"fan.yaml": FAN}, overrides={"workflows": {"inline_output_bytes": 20}})
    run = app.workflows.wait(app.workflows.start("fan", {"names": ["a", "a"]}).id, 30)
    assert run.state == "succeeded"
    items = [step(app, run.id, "greet", i) for i in (0, 1)]
    assert items[0].output_ref is not None and items[0].output == {"message": "Hello, a #0!"}
    parent = step(app, run.id, "greet")
    assert parent.output_ref is not None and len(parent.output) == 2


def test_cancel_a_waiting_run(wf_app: Start) -> None:
    app = wf_app({"a.yaml": APPROVAL})
    run = app.workflows.start("approve-me", {"name": "x"})
    eventually(lambda: state_of(app, run.id, "ok") == "waiting", "the approval")
    assert app.workflows.cancel(run.id, "alice") is True
    assert app.workflows.get_run(run.id).state == "cancelled"
    assert step(app, run.id, "ok").state == "cancelled"
    assert app.workflows.cancel(run.id, "alice") is False
    with pytest.raises(RunStateError):
        app.workflows.approve(run.id, "ok", "alice")


TRIGGERED = HEAD + """\
name: on-order
triggers:
  - {name: big-orders, event: "plugin.*.order", filter: "trigger.data.total > 100",
     inputs: {name: "order ${{ trigger.data.id }}"}}
  - {name: nightly, cron: "0 2 * * *", timezone: Asia/Tokyo, inputs: {name: nightly}}
inputs: {type: object, properties: {name: {type: string}}, required: [name]}
steps: [{id: g, uses: plugin:greeter-rust/greet, with: {name: "${{ inputs.name }}"}}]
outputs: {said: "${{ steps.g.output.message }}"}
"""


def test_an_event_trigger_starts_a_run_when_its_filter_holds(wf_app: Start) -> None:
    app = wf_app({"t.yaml": TRIGGERED})
    for total, oid in ((5, 1), (150, 2)):
        app.events.publish(PluginEvent(topic="plugin.shop.order", plugin="shop",
                                       data=json.dumps({"total": total, "id": oid}).encode()))
    runs = eventually(lambda: app.workflows.runs("on-order"), "the triggered run")
    run = app.workflows.wait(runs[0].id, 30)
    assert run.outputs == {"said": "Hello, order 2!"}
    assert run.started_by == "event:plugin.shop.order"
    assert run.trigger["data"] == {"total": 150, "id": 2}
    app.events.publish(PluginEvent(topic="plugin.shop.refund", plugin="shop", data=b"{}"))
    app.workflows.wait(run.id, 1)
    assert len(app.workflows.runs("on-order")) == 1


def test_a_cron_trigger_fires_once_per_period_in_its_time_zone(wf_app: Start) -> None:
    app = wf_app({"t.yaml": TRIGGERED})
    store = app.workflows.store
    first = eventually(lambda: store.next_fire("on-order", "nightly"), "the first next fire")
    # 02:00 in Tokyo is 17:00 UTC.
    assert time.gmtime(first).tm_hour == 17 and time.gmtime(first).tm_min == 0
    assert store.set_fire("on-order", "nightly", first, time.time() - 1)  # it is due now
    runs = eventually(lambda: app.workflows.runs("on-order"), "the cron run")
    run = app.workflows.wait(runs[0].id, 30)
    assert run.state == "succeeded" and run.started_by == "cron:nightly"
    assert run.outputs == {"said": "Hello, nightly!"}
    later = eventually(lambda: (n := store.next_fire("on-order", "nightly")) and n > time.time()
                       and n, "the next fire")
    assert time.gmtime(later).tm_hour == 17
    assert len(app.workflows.runs("on-order")) == 1


def test_a_step_can_wait_for_an_event(wf_app: Start) -> None:
    text = HEAD + """\
name: waiter
steps:
  - {id: paid, wait: {event: "plugin.*.paid", filter: "trigger.data.order == 7"}}
  - {id: g, uses: plugin:greeter-rust/greet, with: {name: "${{ steps.paid.output.data.by }}"}}
outputs: {said: "${{ steps.g.output.message }}"}
"""
    app = wf_app({"w.yaml": text})
    run = app.workflows.start("waiter")
    eventually(lambda: state_of(app, run.id, "paid") == "waiting", "the wait")
    for order in (6, 7):
        app.events.publish(PluginEvent(topic="plugin.bank.paid", plugin="bank",
                                       data=json.dumps({"order": order, "by": "Bo"}).encode()))
    done = app.workflows.wait(run.id, 30)
    assert done.state == "succeeded" and done.outputs == {"said": "Hello, Bo!"}


def test_a_broken_file_fails_alone_with_every_problem(wf_app: Start) -> None:
    app = wf_app({"good.yaml": APPROVAL,
                  "bad.yaml": HEAD + "name: bad\nsteps:\n  - {id: a, uses: plugin:ghost/x}\n"
                                     "  - {id: b, uses: plugin:greeter-rust/shout}\n"})
    entries = {e.name: e for e in app.workflows.entries}
    assert entries["approve-me"].state == "loaded"
    assert entries["bad"].state == "failed"
    assert [str(p) for p in entries["bad"].problems] == [
        "line 5: steps[1].uses: step 'b': plugin 'greeter-rust' has no handler 'shout' "
        "(handlers: greet)"]
    assert [str(p) for p in entries["bad"].warnings] == [
        "warning: line 4: steps[0].uses: step 'a' uses plugin 'ghost', which the app does not "
        "have (plugins: counter-rust, greeter-rust, textstats-rust); it may be added later "
        "or served by another host of the store: until a host serves it, the step waits "
        "queued"]


def test_a_run_whose_advance_failed_on_the_storage_advances_when_it_returns(
        wf_app: Start, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from omnicore.storage import StorageError

    caplog.set_level(logging.INFO, logger="omnicore.workflows")
    text = (ROOT / "examples" / "workflows" / "text-report.yaml").read_text()
    app = wf_app({"text-report.yaml": text})
    store = app.workflows.store
    add_steps, refused = store.add_steps, []

    def away(*args: Any, **kwargs: Any) -> Any:
        refused.append(1)
        raise StorageError("storage test.db: unreachable")

    monkeypatch.setattr(store, "add_steps", away)
    run = app.workflows.start("text-report", {"name": "Ada"})
    eventually(lambda: len(refused) >= 2, "the ticker to try again in the outage")
    assert app.workflows.get_run(run.id).state == "running"
    monkeypatch.setattr(store, "add_steps", add_steps)
    # No event and no restart: the ticker advances it once the storage answers.
    assert app.workflows.wait(run.id, 30).state == "succeeded"
    lines = [(r.getMessage(), r.exc_info) for r in caplog.records
             if "workflow runs" in r.getMessage()]
    assert [m.split(":")[0].split(" after")[0] for m, _ in lines] == [
        "workflow runs paused", "workflow runs resumed"], lines
    assert all(exc is None for _, exc in lines)
