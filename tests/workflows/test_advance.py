"""The pure step-advance rules (workflows/advance.py) on plain records: no threads, no
storage. Each case builds a run's step rows by hand and checks which rows advancing would
create and how the run stands."""

from __future__ import annotations

from typing import Any

import pytest

from omnicore.storage.workflows import RunRecord, StepRecord
from omnicore.workflows import parse
from omnicore.workflows.advance import (
    Context,
    begin,
    idempotency_key,
    items_outcome,
    outcome,
    ready,
    truthy,
)
from omnicore.workflows.definition import Workflow

NOW = 1_000_000.0

FLOW = """\
format: omniflow/v1
name: flow
inputs: {type: object, properties: {go: {type: boolean}, names: {type: array}}}
steps:
  - id: a
    uses: plugin:p/h
    with: {x: "${{ inputs.go }}"}
  - id: b
    uses: plugin:p/h
    needs: [a]
    if: "inputs.go"
    with: {from_a: "${{ steps.a.output.n }}", key: "${{ step.idempotency_key }}"}
  - id: c
    uses: plugin:p/h
    needs: [a]
    continue_on_error: true
  - id: d
    uses: plugin:p/h
    needs: [b, c]
on_failure:
  - id: cleanup
    uses: plugin:p/h
    with: {why: "${{ run.error }}"}
outputs: {n: "${{ steps.a.output.n }}"}
"""

EACH = """\
format: omniflow/v1
name: each
steps:
  - id: greet
    uses: plugin:p/h
    with: {name: "${{ item }}", at: "${{ index }}", key: "${{ step.idempotency_key }}"}
    for_each: inputs.names
    parallelism: 2
"""

WAITS = """\
format: omniflow/v1
name: waits
steps:
  - {id: ok, wait: {approval: {message: "Go?"}}}
  - {id: nap, wait: {sleep: 5s}}
  - {id: paid, wait: {event: "plugin.*.paid", timeout: 60s}}
  - {id: forever, wait: {event: "plugin.*.paid"}}
"""


def run(inputs: Any = None, restarts: int = 0) -> RunRecord:
    return RunRecord(7, "flow", "v1", "running", inputs or {}, None, None, None, None, "test",
                     None, None, None, NOW, NOW, None, restarts)


def row(step: str, state: str, output: Any = None, error: str | None = None,
        index: int = -1) -> StepRecord:
    return StepRecord(7, step, index, state, 1, None, output, None, None, error, NOW, NOW,
                      NOW, None, None, None, None)  # type: ignore[arg-type]


def start(wf: Workflow, sid: str, rows: dict[str, StepRecord], r: RunRecord,
          max_items: int = 100) -> list[Any]:
    found = dict((s.id, needs) for s, needs in ready(wf.steps + wf.on_failure, rows))
    return begin(wf, wf.step(sid), found[sid], Context(r, rows), max_items=max_items,
                 now=NOW)


def test_only_the_steps_whose_needs_all_ended_are_ready() -> None:
    wf = parse(FLOW)
    assert [s.id for s, _ in ready(wf.steps, {})] == ["a"]
    rows = {"a": row("a", "running")}
    assert ready(wf.steps, rows) == []
    rows = {"a": row("a", "succeeded", {"n": 3})}
    assert [s.id for s, _ in ready(wf.steps, rows)] == ["b", "c"]
    rows |= {"b": row("b", "succeeded"), "c": row("c", "waiting")}
    assert ready(wf.steps, rows) == []      # d needs c too, still waiting
    rows["c"] = row("c", "failed", error="boom")
    ready_now = ready(wf.steps, rows)
    assert [(s.id, [n.step for n in needs]) for s, needs in ready_now] == [("d", ["b", "c"])]


def test_a_step_input_is_evaluated_when_it_starts_with_its_idempotency_key() -> None:
    wf = parse(FLOW)
    rows = {"a": row("a", "succeeded", {"n": 3})}
    (new,) = start(wf, "b", rows, run({"go": True}))
    assert (new.step, new.index, new.state) == ("b", -1, "queued")
    assert new.input == {"from_a": 3, "key": "flow/7/b"}
    (again,) = start(wf, "b", rows, run({"go": True}, restarts=2))
    assert again.input["key"] == "flow/7/b/r2"   # a restart is a new key


def test_if_false_skips_and_a_skip_or_unforgiven_failure_skips_the_dependants() -> None:
    wf = parse(FLOW)
    rows = {"a": row("a", "succeeded", {"n": 3})}
    (skipped,) = start(wf, "b", rows, run({"go": False}))
    assert skipped.state == "skipped" and skipped.wait == {"reason": "if was false"}
    # d needs b (skipped): skipped, naming the need.
    rows |= {"b": row("b", "skipped"), "c": row("c", "succeeded")}
    (d,) = start(wf, "d", rows, run())
    assert (d.state, d.error) == ("skipped", "needed step b was skipped")
    # A failure of a continue_on_error step (c) does not skip d; a failure of b does.
    rows |= {"b": row("b", "succeeded"), "c": row("c", "failed", error="x")}
    assert start(wf, "d", rows, run())[0].state == "queued"
    rows |= {"b": row("b", "cancelled"), "c": row("c", "succeeded")}
    (d,) = start(wf, "d", rows, run())
    assert (d.state, d.error) == ("skipped", "needed step b cancelled")


def test_an_expression_that_fails_fails_the_step_not_the_advance() -> None:
    wf = parse(FLOW)
    rows = {"a": row("a", "succeeded", {"n": 3})}
    (b,) = start(wf, "b", rows, run({}))   # inputs.go is missing: the if cannot evaluate
    assert b.state == "failed" and "go" in (b.error or "")


def test_for_each_makes_a_running_parent_and_one_pending_row_per_item() -> None:
    wf = parse(EACH)
    new = start(wf, "greet", {}, run({"names": ["Ada", "Bo"]}))
    assert [(n.index, n.state) for n in new] == [(-1, "running"), (0, "pending"),
                                                 (1, "pending")]
    assert new[0].wait == {"items": 2}
    assert new[1].input == {"name": "Ada", "at": 0, "key": "flow/7/greet/0"}
    assert new[2].input == {"name": "Bo", "at": 1, "key": "flow/7/greet/1"}
    assert [(n.index, n.state) for n in start(wf, "greet", {}, run({"names": []}))] == \
        [(-1, "running")]


@pytest.mark.parametrize("names, why", [("Ada", "must give a list, got str"),
                                        (list(range(4)), "gave 4 items; the limit is 3")])
def test_for_each_over_a_non_list_or_over_the_limit_fails_the_step(names: Any,
                                                                   why: str) -> None:
    (new,) = start(parse(EACH), "greet", {}, run({"names": names}), max_items=3)
    assert new.state == "failed" and why in (new.error or "")


def test_for_each_ends_when_every_item_has_and_names_the_first_failed_item() -> None:
    s = parse(EACH).step("greet")
    assert items_outcome(s, 3, {"succeeded": 2, "running": 1}, None) is None
    assert items_outcome(s, 3, {"succeeded": 3}, None) == ("succeeded", None)
    assert items_outcome(s, 0, {}, None) == ("succeeded", None)
    first = row("greet", "failed", error="boom", index=1)
    assert items_outcome(s, 3, {"succeeded": 1, "failed": 1, "cancelled": 1}, first) == \
        ("failed", "2 of 3 items failed; item 1: boom")
    forgiving = parse(EACH.replace("parallelism: 2", "parallelism: 2\n    "
                                   "continue_on_error: true")).step("greet")
    assert items_outcome(forgiving, 2, {"failed": 2}, first) == ("succeeded", None)


def test_wait_steps_start_as_waiting_rows_or_a_due_sleep() -> None:
    wf = parse(WAITS)
    rows: dict[str, StepRecord] = {}
    (ok,) = start(wf, "ok", rows, run())
    assert ok.state == "waiting" and ok.wait == {"kind": "approval", "message": "Go?"}
    (nap,) = start(wf, "nap", rows, run())
    assert nap.state == "queued" and nap.run_at == NOW + 5
    (paid,) = start(wf, "paid", rows, run())
    assert paid.state == "waiting" and paid.wait == {"kind": "event",
                                                     "topic": "plugin.*.paid",
                                                     "until": NOW + 60}
    (forever,) = start(wf, "forever", rows, run())
    assert forever.wait["until"] is None


def test_a_run_runs_until_every_step_ended_then_succeeds() -> None:
    wf = parse(FLOW)
    rows = {s: row(s, "succeeded") for s in "abc"}
    assert outcome(wf, rows).state == "running"
    rows["d"] = row("d", "queued")
    assert outcome(wf, rows).state == "running"
    rows["d"] = row("d", "succeeded")
    assert outcome(wf, rows).state == "succeeded"
    rows["c"] = row("c", "failed", error="x")       # continue_on_error
    assert outcome(wf, rows).state == "succeeded"


def test_a_failed_step_runs_on_failure_first_then_fails_the_run_with_its_error() -> None:
    wf = parse(FLOW)
    rows = {"a": row("a", "failed", error="GuestError: no"), "b": row("b", "skipped"),
            "c": row("c", "skipped"), "d": row("d", "skipped")}
    first = outcome(wf, rows)
    assert (first.state, first.error) == ("on_failure", "step a failed: GuestError: no")
    # The on_failure step is ready with the error in the context.
    ctx = Context(run(), rows)
    ctx.error = first.error
    (cleanup,) = begin(wf, wf.step("cleanup"), [], ctx, max_items=10, now=NOW)
    assert cleanup.input == {"why": "step a failed: GuestError: no"}
    rows["cleanup"] = row("cleanup", "running")
    assert outcome(wf, rows).state == "on_failure"
    rows["cleanup"] = row("cleanup", "failed")
    assert (outcome(wf, rows).state, outcome(wf, rows).error) == \
        ("failed", "step a failed: GuestError: no")
    # Without on_failure steps a failure ends the run at once; a cancelled step names it.
    plain = parse(FLOW.split("on_failure:")[0] + "outputs: {n: 1}\n")
    rows = {s: row(s, "succeeded") for s in "abd"} | {"c": row("c", "succeeded")}
    rows["b"] = row("b", "cancelled")
    assert (outcome(plain, rows).state, outcome(plain, rows).error) == \
        ("failed", "step b cancelled")


def test_the_context_shows_only_ended_steps_and_the_run() -> None:
    rows = {"a": row("a", "succeeded", {"n": 1}), "b": row("b", "running")}
    data = Context(run({"go": True}, restarts=1), rows).data(item=5)
    assert data["steps"] == {"a": {"output": {"n": 1}, "state": "succeeded", "error": None}}
    assert data["inputs"] == {"go": True} and data["item"] == 5
    assert data["run"]["restarts"] == 1 and data["run"]["id"] == 7


def test_truthy_treats_false_strings_as_false_and_keys_are_stable() -> None:
    assert [truthy(v) for v in (True, 1, "yes", False, 0, "", "false", "0", None)] == \
        [True, True, True, False, False, False, False, False, False]
    assert idempotency_key(run(), "s", -1) == "flow/7/s"
    assert idempotency_key(run(restarts=3), "s", 4) == "flow/7/s/4/r3"


def test_outputs_read_without_them_are_loaded_once_and_only_when_an_expression_needs_them(
        ) -> None:
    wf = parse(FLOW)
    light = {"a": row("a", "succeeded"), "c": row("c", "running")}
    loads: list[int] = []

    def load() -> dict[str, StepRecord]:
        loads.append(1)
        return {"a": row("a", "succeeded", {"n": 9}), "c": row("c", "running")}

    ctx = Context(run({"go": True}), light, load, unloaded=light)
    # Deciding what is ready and how the run stands needs states only.
    assert [s.id for s, _ in ready(wf.steps, light)] == ["b"]
    assert outcome(wf, light).state == "running"
    assert loads == []
    (b,) = begin(wf, wf.step("b"), [light["a"]], ctx, max_items=10, now=NOW)
    assert b.input["from_a"] == 9 and loads == [1]
    assert ctx.data()["steps"]["a"]["output"] == {"n": 9} and loads == [1]
