"""The enqueue door (``jobs/service.py``): a job for a handler the loaded plugin does not
export is refused there, naming the handlers it has, from every surface that enqueues; a job
for a plugin not loaded yet is accepted as before."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from omnicore.app import OmniApp
from omnicore.capabilities.tasks import TaskGrant, _schedule, _State
from omnicore.errors import HandlerNotFound, OmniError
from omnicore.sandbox.capability import PluginContext, Status
from omnicore.sandbox.pluginlog import PluginLog
from tests.capabilities.test_tasks import enq, tasks_wasm


@pytest.fixture
def app(make_app: Callable[..., OmniApp]) -> Iterator[OmniApp]:
    app = make_app("jobs", builtin_extensions=None, overrides={
        "sandbox": {"watch": False}, "capabilities": {"tasks": {"poll_s": 30}}})
    app.start()
    app.plugins.load(tasks_wasm(), grants=["kv", "tasks"])
    yield app
    app.stop(grace=1)


def test_a_handler_the_loaded_plugin_lacks_is_refused_with_the_ones_it_has(app: OmniApp
                                                                           ) -> None:
    with pytest.raises(HandlerNotFound) as info:
        app.jobs.enqueue("tp", "wrok", b"typo", delay_s=3600)
    message = str(info.value)
    assert "'tp'" in message and "no handler 'wrok'" in message
    assert all(h in message for h in ("work", "boom", "enq")), message
    assert isinstance(info.value, OmniError) and info.value.plugin == "tp"
    assert app.jobs.list(plugin="tp") == []  # nothing was queued to fail five times
    assert app.jobs.enqueue("tp", "work", b"fine", delay_s=3600) >= 1


def test_a_disabled_or_ungranted_plugin_still_knows_its_handlers(app: OmniApp) -> None:
    app.plugins.load(tasks_wasm("needy"), grants=["kv"])  # imports tasks: not granted
    assert app.plugins.get("needy").state == "needs-grant"
    with pytest.raises(HandlerNotFound, match="'needy'"):
        app.jobs.enqueue("needy", "nope")
    assert app.jobs.enqueue("needy", "work", delay_s=3600) >= 1  # it may be granted later


def test_a_plugin_not_loaded_yet_or_broken_is_accepted(app: OmniApp, tmp_path: Path) -> None:
    later = app.jobs.enqueue("later", "anything", delay_s=3600)
    assert (task := app.jobs.get(later)) is not None and task.state == "queued"
    broken = tmp_path / "broken.wasm"
    broken.write_bytes(b"\0asm junk")
    assert app.plugins.load_file(broken) == "broken"
    assert app.plugins.get("broken").state == "failed"  # no module: no handlers to hold to
    assert app.jobs.enqueue("broken", "anything", delay_s=3600) >= 1


def test_the_plugins_own_enqueue_is_refused_the_same(app: OmniApp) -> None:
    # Through omnicore:tasks: the status code for "no such handler", and nothing queued.
    assert enq(app, "wrok") == Status.NOT_FOUND
    # A version linked with a handler its reload dropped: the door refuses, the guest gets
    # the same status rather than a trap.
    stale = _State(app.jobs, PluginContext("tp", {}, {}, PluginLog("tp"), None, ("gone",)),
                   TaskGrant.defaults(app.jobs.options))
    assert _schedule(stale, "gone", 0, lambda: b"", 0) == Status.NOT_FOUND
    assert app.jobs.list(plugin="tp") == []
