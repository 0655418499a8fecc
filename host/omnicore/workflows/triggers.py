"""What starts runs and ends waits from outside: cron and event triggers, signed webhooks,
event waits and their timeouts.

:class:`Triggers` is driven by the service: :meth:`Triggers.on_event` for every bus event,
:meth:`Triggers.tick` from the workers' ticker, :meth:`Triggers.webhook` from the console's
``/hooks/<path>``. A cron fire is a compare-and-set of the trigger's next fire time in the
same transaction as the run it starts, so one host of a cluster fires it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from omnicore.capabilities import guestjson
from omnicore.config.schema import WorkflowsConfig
from omnicore.core.events import Event
from omnicore.core.outage import Outage
from omnicore.errors import OmniError
from omnicore.jobs.schedules import Schedule
from omnicore.logging import get_logger
from omnicore.storage import StorageError
from omnicore.storage.workflows import RunRecord, StepRecord, WorkflowStore
from omnicore.workflows.advance import encode, truthy
from omnicore.workflows.definition import Step, Trigger, Workflow
from omnicore.workflows.entries import WorkflowEntries
from omnicore.workflows.errors import ExpressionError, InputInvalid, RunStateError

__all__ = ["SIGNATURE_HEADER", "StartRun", "Triggers", "WebhookAnswer", "sign_webhook"]

log = get_logger("omnicore.workflows")

SIGNATURE_HEADER = "X-Omnicore-Signature"

#: How the service starts a run: (definition, inputs, started_by, trigger, fire).
StartRun = Callable[[Workflow, dict[str, Any], str, Any,
                     tuple[str, float | None, float] | None], RunRecord]


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    """The HTTP status and JSON body a webhook POST gets."""

    status: int
    body: dict[str, Any]


def sign_webhook(secret: bytes, body: bytes, timestamp: int | None = None) -> str:
    """The ``X-Omnicore-Signature`` value for ``body``: ``t=<unix>,v1=<hex HMAC-SHA256>``
    of ``"<t>." + body`` keyed with the secret."""
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


class Triggers:
    """The triggers of the loaded definitions and the event waits of running runs."""

    def __init__(self, entries: WorkflowEntries, store: Callable[[], WorkflowStore],
                 settings: WorkflowsConfig, start: StartRun,
                 version: Callable[[str], Workflow], advance: Callable[[int], None],
                 secret: Callable[[str], bytes | None]) -> None:
        self._entries = entries
        self._store = store
        self._settings = settings
        self._start = start
        self._version = version
        self._advance = advance
        self._secret = secret
        self._delivering = Outage("workflow event triggers", log, transient=(StorageError,))
        #: The topics event waits listen to (refreshed each tick, added to as waits begin),
        #: so most events skip the storage read of the waiting steps.
        self.wait_topics: frozenset[str] = frozenset()

    def _workflows(self) -> list[Workflow]:
        return [e.workflow for e in self._entries if e.workflow is not None]

    def began(self, s: Step) -> None:
        """A step's rows were created: listen for its event wait's topic."""
        if s.wait is not None and s.wait.kind == "event":
            self.wait_topics |= {str(s.wait.topic)}

    # -- events --

    def on_event(self, event: Event, deliver: Executor) -> None:
        """Start the runs ``event`` triggers and end the waits it satisfies (on ``deliver``,
        so the publisher does not wait for storage)."""
        triggers = [(wf, t) for wf in self._workflows() for t in wf.triggers
                    if t.kind == "event" and fnmatch.fnmatchcase(event.topic, t.topic)]
        waits = any(fnmatch.fnmatchcase(event.topic, t) for t in self.wait_topics)
        if not triggers and not waits:
            return
        from omnicore.subscriptions import event_body
        body = json.loads(event_body(event))
        # In an outage of the storage the event is not delivered (logged once an outage):
        # like a live subscription's, an event trigger is at most once.
        deliver.submit(self._delivering.call,
                       lambda: self._deliver(body, triggers, event.topic if waits else None),
                       None)

    def _deliver(self, body: dict[str, Any], triggers: list[tuple[Workflow, Trigger]],
                 wait_topic: str | None) -> None:
        for wf, t in triggers:
            try:
                if t.filter is not None and not truthy(t.filter.evaluate({"trigger": body})):
                    continue
                inputs = t.inputs.evaluate({"trigger": body})
                self._start(wf, inputs or {}, f"event:{body['topic']}", body, None)
            except StorageError:
                raise
            except OmniError as exc:
                log.error("workflow %s: event trigger %s: %s", wf.name, t.name, exc)
        store = self._store()
        for row in self._event_waits(wait_topic) if wait_topic is not None else []:
            try:
                run = store.run(row.run_id)
                if run is None:
                    raise RunStateError(f"no workflow run {row.run_id}")
                s = self._version(run.version).step(row.step)
                if s.wait is not None and s.wait.filter is not None and \
                        not truthy(s.wait.filter.evaluate({"trigger": body})):
                    continue
            except StorageError:
                raise
            except OmniError as exc:
                log.error("run %d step %s: event filter: %s", row.run_id, row.step, exc)
                continue
            if store.complete(row.run_id, row.step, row.index, owner=None,
                              state="succeeded", output=encode(body),
                              expect=("waiting",), actor=f"event:{body['topic']}"):
                self._advance(row.run_id)

    def _event_waits(self, topic: str) -> list[StepRecord]:
        return [r for r in self._store().waiting()
                if isinstance(r.wait, dict) and r.wait.get("kind") == "event"
                and fnmatch.fnmatchcase(topic, str(r.wait.get("topic")))]

    # -- webhooks --

    def webhook(self, path: str, body: bytes, signature: str | None) -> WebhookAnswer:
        """A POST to ``/hooks/<path>``: the signature checked, then a run started (202)."""
        matches = [(wf, t) for wf in self._workflows()
                   for t in wf.triggers if t.kind == "webhook" and t.path == path]
        if not matches:
            return WebhookAnswer(404, {"error": f"no webhook at {path!r}"})
        wf, trig = matches[0]
        secret = self._secret(trig.secret)
        if secret is None:
            log.error("workflow %s: webhook secret %r is not set", wf.name, trig.secret)
            return WebhookAnswer(503, {"error": "this webhook's secret is not set on the host"})
        try:
            why = self._check_signature(secret, body, signature)
        except StorageError as exc:
            log.error("workflow %s: webhook %s: cannot record the delivery: %s", wf.name,
                      path, exc)
            return WebhookAnswer(503, {"error": f"the host cannot record this delivery now "
                                                f"({exc}); send it again later"})
        if why:
            return WebhookAnswer(401, {"error": why})
        try:
            data = guestjson.loads(body, max_depth=guestjson.MAX_DEPTH) if body.strip() else {}
        except ValueError as exc:
            return WebhookAnswer(400, {"error": f"the body is not JSON: {str(exc)[:200]}"})
        trigger = {"topic": f"webhook.{path}", "path": path, "data": data}
        try:
            inputs = trig.inputs.evaluate({"trigger": trigger}) if trig.inputs.value else data
            if not isinstance(inputs, dict):
                return WebhookAnswer(422, {"error": "the inputs must be a JSON object",
                                           "field": ""})
            run = self._start(wf, inputs, f"webhook:{path}", trigger, None)
        except InputInvalid as exc:
            return WebhookAnswer(422, {"error": str(exc), "field": exc.field})
        except ExpressionError as exc:
            return WebhookAnswer(422, {"error": str(exc)})
        return WebhookAnswer(202, {"run": run.id, "state": run.state})

    def _check_signature(self, secret: bytes, body: bytes, header: str | None) -> str | None:
        """Why the delivery is refused (None: accepted, and recorded against a replay).

        Everything in the header is the sender's text: the time must be a plain decimal
        number of at most 12 digits (a 310-digit one overflows float arithmetic) and the MAC
        plain ASCII hex, before either is used.
        """
        if not header:
            return f"missing {SIGNATURE_HEADER} header"
        parts = {k.strip(): v.strip() for k, _, v in (p.partition("=") for p in
                                                        header.split(","))}
        stamp, mac = parts.get("t", ""), parts.get("v1", "")
        if not (stamp.isascii() and stamp.isdecimal() and len(stamp) <= 12) or \
                not (mac.isascii() and 0 < len(mac) <= 128):
            return f"bad {SIGNATURE_HEADER} header: want t=<unix time>,v1=<hex>"
        t = int(stamp)
        window = self._settings.webhook_window_s
        now = time.time()
        if abs(now - t) > window:
            return f"the signature's time is outside the replay window ({window}s)"
        expected = sign_webhook(secret, body, t).split("v1=", 1)[1]
        if not hmac.compare_digest(expected, mac):
            return "bad signature"
        # In storage, not memory: a delivery seen before a restart is still a replay after.
        if not self._store().first_delivery(expected, now, window):
            return "this signature was already used (replay)"
        return None

    # -- the ticker: crons and wait timeouts --

    def tick(self, now: float) -> None:
        """Fire the cron triggers that are due; fail the event waits past their timeout."""
        self._fire_crons(now)
        self._expire_waits(now)

    def _fire_crons(self, now: float) -> None:
        store = self._store()
        for wf in self._workflows():
            for t in wf.triggers:
                if t.kind != "cron":
                    continue
                sched = Schedule("", t.name, "", cron=t.cron, tz=t.timezone)
                due = store.next_fire(wf.name, t.name)
                if due is None:
                    store.set_fire(wf.name, t.name, None, sched.next_after(now))
                elif due <= now:
                    trigger = {"topic": f"cron.{t.name}", "scheduled_at": due, "data": None}
                    try:
                        inputs = t.inputs.evaluate({"trigger": trigger}) or {}
                        self._start(wf, inputs, f"cron:{t.name}", trigger,
                                    (t.name, due, sched.next_after(now)))
                    except RunStateError:
                        pass  # another host fired it
                    except StorageError:
                        raise  # fired on a later tick, once the storage answers
                    except OmniError as exc:
                        log.error("workflow %s: cron trigger %s: %s", wf.name, t.name, exc)
                        store.set_fire(wf.name, t.name, due, sched.next_after(now))

    def _expire_waits(self, now: float) -> None:
        store = self._store()
        waiting = store.waiting()
        self.wait_topics = frozenset(str(r.wait.get("topic")) for r in waiting
                                     if isinstance(r.wait, dict)
                                     and r.wait.get("kind") == "event")
        for row in waiting:
            wait = row.wait if isinstance(row.wait, dict) else {}
            until = wait.get("until")
            if wait.get("kind") == "event" and until is not None and until <= now:
                if store.complete(row.run_id, row.step, row.index, owner=None,
                                  state="failed", expect=("waiting",), actor="engine",
                                  error=f"no {wait.get('topic')} event before the timeout"):
                    self._advance(row.run_id)
