"""Only a ``secrets.NAME`` written in a workflow definition resolves to a secret; data that
reads ``[secret NAME]`` is sent as that text, whatever path it came by: run inputs, for_each
items, a webhook body, an event payload (trigger or wait), a previous step's output, an
approver's comment.

A real upstream on 127.0.0.1 records what it received; the definitions template every data
path into headers (where references are allowed) and into query and body (where they never
are), beside a header that does reference a secret on purpose.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from omnicore import OmniApp
from omnicore.capabilities.events import PluginEvent
from omnicore.workflows import sign_webhook
from tests.egress.echo import Echo
from tests.waiting import eventually

TOP = "top-secret-value-0987"       # what the attacker's data names
API_KEY = "sk-live-api-key-123456"  # the connector's own credential
EXTRA = "extra-secret-value-42"     # the one the definitions reference on purpose
HOOK = "whsec-hook-secret-55"
PROBES = ("[secret TOP]", "[secret API_KEY]", "[secret EXTRA]", "a[secret TOP]b")

HEADERS = """\
    headers:
      X-Trace: "${{ %s }}"
      X-Both: "${{ secrets.EXTRA }}|${{ %s }}"
"""


def flow(name: str, expr: str, head: str = "", before: str = "", more: str = "") -> str:
    return (f"format: omniflow/v1\nname: {name}\n{head}steps:\n{before}"
            f"  - id: call\n    uses: connector:api\n    method: POST\n    path: /record\n"
            f"{more}    query: {{t: \"${{{{ {expr} }}}}\"}}\n"
            f"    with: {{t: \"${{{{ {expr} }}}}\"}}\n" + HEADERS % (expr, expr))


FLOWS = {
    "inputs.yaml": flow("by-input", "inputs.trace"),
    "item.yaml": flow("by-item", "item", more='    for_each: "${{ inputs.list }}"\n'),
    "webhook.yaml": flow("by-webhook", "trigger.data.trace",
                         head="triggers: [{webhook: traced/in, secret: HOOK}]\n"),
    "event.yaml": flow("by-event", "trigger.data.trace",
                       head='triggers: [{event: "plugin.*.traced"}]\n'),
    "wait.yaml": flow("by-wait", "steps.w.output.data.trace",
                      before='  - {id: w, wait: {event: "plugin.*.go"}}\n',
                      more="    needs: [w]\n"),
    "approval.yaml": flow("by-approval", "steps.ok.output.comment",
                          before="  - {id: ok, wait: approval}\n",
                          more="    needs: [ok]\n"),
    "output.yaml": flow("by-output", "steps.first.output.body.trace",
                        before="  - {id: first, uses: connector:api, path: /give}\n",
                        more="    needs: [first]\n"),
}


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.close()


@pytest.fixture
def app(wf_app: Callable[..., OmniApp], echo: Echo) -> OmniApp:
    started = wf_app(FLOWS, extra=f"""\
        connectors:
          api: {{base_url: "{echo.base}", auth: bearer, secret: API_KEY}}
        """)
    for name, value in (("TOP", TOP), ("API_KEY", API_KEY), ("EXTRA", EXTRA),
                        ("HOOK", HOOK)):
        started.secrets.set(name, value)
    return started


def _finished(app: OmniApp, workflow: str, count: int) -> list[Any]:
    def done() -> list[Any] | None:
        runs = app.workflows.runs(workflow=workflow)
        if len(runs) >= count and all(r.state not in ("queued", "running") for r in runs):
            return runs
        return None

    return eventually(done, f"{count} finished runs of {workflow}")


def _waiting(app: OmniApp, run: int, step: str) -> None:
    eventually(lambda: (s := app.workflows.store.step(run, step)) is not None
               and s.state == "waiting", f"step {step} of run {run} waiting")


def _check(app: OmniApp, echo: Echo, runs: list[Any], probes: list[str]) -> None:
    """Every run succeeded; each probe arrived as text; no secret arrived but where the
    definition (X-Both's head) or the connector (Authorization) put it."""
    assert [r.state for r in runs] == ["succeeded"] * len(runs), [r.error for r in runs]
    calls = [s for s in echo.seen if s["path"].startswith("/record")]
    assert sorted(s["headers"]["X-Trace"] for s in calls) == sorted(probes)
    for s in calls:
        trace = s["headers"]["X-Trace"]
        assert s["headers"]["X-Both"] == f"{EXTRA}|{trace}"
        assert json.loads(s["body"]) == {"t": trace}
        assert s["headers"]["Authorization"] == f"Bearer {API_KEY}"
        rest = dict(s["headers"], Authorization="", **{"X-Both": trace})
        seen = json.dumps([s["path"], rest, s["body"].decode()])
        assert TOP not in seen and API_KEY not in seen and EXTRA not in seen, seen
    for run in runs:            # what was recorded shows the reference, never the value
        rows = json.dumps([r.as_dict() for r in app.workflows.steps(run.id)])
        assert TOP not in rows and API_KEY not in rows and EXTRA not in rows


def test_run_inputs_and_for_each_items(app: OmniApp, echo: Echo) -> None:
    runs = [app.workflows.wait(app.workflows.start("by-input", {"trace": p}).id, 60)
            for p in PROBES]
    _check(app, echo, runs, list(PROBES))
    echo.seen.clear()
    run = app.workflows.wait(app.workflows.start("by-item", {"list": list(PROBES)}).id, 60)
    _check(app, echo, [run], list(PROBES))


def test_a_webhook_body(app: OmniApp, echo: Echo) -> None:
    for probe in PROBES:
        body = json.dumps({"trace": probe}).encode()
        answer = app.workflows.webhook("traced/in", body, sign_webhook(HOOK.encode(), body))
        assert answer.status == 202, answer.body
    _check(app, echo, _finished(app, "by-webhook", len(PROBES)), list(PROBES))


def test_an_event_payload_as_trigger_and_as_a_waited_event(app: OmniApp, echo: Echo) -> None:
    for probe in PROBES:
        app.events.publish(PluginEvent(topic="plugin.evil.traced", plugin="evil",
                                       data=json.dumps({"trace": probe}).encode()))
    _check(app, echo, _finished(app, "by-event", len(PROBES)), list(PROBES))
    echo.seen.clear()
    run = app.workflows.start("by-wait", {})
    _waiting(app, run.id, "w")
    app.events.publish(PluginEvent(topic="plugin.evil.go", plugin="evil",
                                   data=json.dumps({"trace": PROBES[0]}).encode()))
    _check(app, echo, [app.workflows.wait(run.id, 60)], [PROBES[0]])


def test_a_previous_steps_output(app: OmniApp, echo: Echo) -> None:
    runs = []
    for probe in PROBES:
        echo.give = {"trace": probe}
        runs.append(app.workflows.wait(app.workflows.start("by-output", {}).id, 60))
    _check(app, echo, runs, list(PROBES))


def test_an_approvers_comment(app: OmniApp, echo: Echo) -> None:
    runs = []
    for probe in PROBES:
        run = app.workflows.start("by-approval", {})
        _waiting(app, run.id, "ok")
        app.workflows.approve(run.id, "ok", "console:admin", comment=probe)
        runs.append(app.workflows.wait(run.id, 60))
    _check(app, echo, runs, list(PROBES))
