"""A command plugin run as a command (``plugins/commands.py``): the reserved ``@exec`` handler,
through the job queue as through a direct call.

A WASI command in the plugins folder loads as a plugin (Extism's shape); a job of its
``@exec`` runs its ``_start`` with the job's arguments and environment, the directories of
its ``fs`` grant and its limits, and keeps the exit code, stdout and stderr as the job's
result; the deadline fails the run as it fails any call.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import wasmtime

from omnicore.app import OmniApp
from omnicore.errors import ConfigError, DeadlineExceeded, HandlerNotFound, InvalidInput
from omnicore.sandbox.capability import Status
from omnicore.storage import Job
from tests.capabilities.test_tasks import enq, tasks_wasm
from tests.host_fixtures import echo_wasm
from tests.sandbox_fixtures import wait_for
from tests.wasi.test_exec import _EXIT, _LIST, _STDIO, _WRITE_FILE

_LOOP = '(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))'


@pytest.fixture
def app(make_app: Callable[..., OmniApp]) -> Iterator[OmniApp]:
    app = make_app("commands", builtin_extensions=None, overrides={
        "sandbox": {"watch": False}, "capabilities": {"tasks": {"poll_s": 30}}})
    app.start()
    yield app
    app.stop(grace=1)


def _load(app: OmniApp, name: str, wat: str, **kwargs: object) -> None:
    path = Path(app.config.plugins_dir) / f"{name}.wasm"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(wasmtime.wat2wasm(wat))
    app.plugins.load(path, **kwargs)  # type: ignore[arg-type]


def _ended(app: OmniApp, job_id: int) -> Job:
    wait_for(lambda: (job := app.jobs.get(job_id)) is not None
             and job.state in ("succeeded", "dead"), what=f"job {job_id} to end")
    job = app.jobs.get(job_id)
    assert job is not None
    return job


def test_a_command_job_keeps_its_exit_code_and_output(app: OmniApp, tmp_path: Path) -> None:
    _load(app, "argv", _LIST.format(kind="args"))
    _load(app, "stdio", _STDIO)
    _load(app, "exits", _EXIT)
    spec = {"args": ["--in", "x y"], "env": {"K": "v"}}
    runs = {name: app.jobs.enqueue(name, "@exec", json.dumps(spec).encode())
            for name in ("argv", "stdio", "exits")}
    results = {}
    for name, job_id in runs.items():
        job = _ended(app, job_id)
        assert job.state == "succeeded", job.last_error
        assert job.result is not None
        results[name] = json.loads(job.result)
    assert results["argv"] == {"exit_code": 0, "stdout": "argv\0--in\0x y\0", "stderr": "",
                               "truncated": False}
    assert results["stdio"]["stdout"] == "to stdout\n"
    assert results["stdio"]["stderr"] == "to stderr\n"
    # A non-zero exit is the program's answer, not a failure to retry.
    assert results["exits"]["exit_code"] == 7
    assert app.jobs.get(runs["exits"]).attempts == 1  # type: ignore[union-attr]
    shown = app.jobs.get(runs["argv"]).as_dict()  # type: ignore[union-attr]
    assert json.loads(str(shown["result"]))["exit_code"] == 0


def test_the_fs_grant_gives_a_command_its_directories(app: OmniApp, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    _load(app, "writer", _WRITE_FILE,
          grants={"fs": {"dirs": [{"path": str(data), "guest": "/data", "write": True}]}})
    out = json.loads(app.plugins.call("writer", "@exec", b""))
    assert out["exit_code"] == 0 and (data / "out.txt").read_text() == "hi"
    _load(app, "nodirs", _WRITE_FILE.replace("out.txt", "out.txu"))
    assert json.loads(app.plugins.call("nodirs", "@exec", b""))["exit_code"] != 0  # no preopen


def test_the_deadline_ends_a_command_job(app: OmniApp) -> None:
    _load(app, "spin", _LOOP, limits={"timeout_ms": 200})
    job = _ended(app, app.jobs.enqueue("spin", "@exec", b"{}", max_attempts=1))
    assert job.state == "dead" and job.result is None
    assert job.last_error is not None and job.last_error.startswith("DeadlineExceeded")
    assert job.started_at is not None and job.finished_at is not None
    with pytest.raises(DeadlineExceeded):
        app.plugins.call("spin", "@exec")


def test_exec_is_refused_for_what_is_no_command(app: OmniApp) -> None:
    app.plugins.load(echo_wasm("echo"))
    with pytest.raises(HandlerNotFound, match="no handler '@exec'"):
        app.jobs.enqueue("echo", "@exec", b"{}")  # at enqueue: the plugin is loaded
    with pytest.raises(HandlerNotFound, match="not a WASI command"):
        app.plugins.call("echo", "@exec", b"{}")
    _load(app, "argv", _LIST.format(kind="args"))
    for bad in (b"[1]", b'{"args": [1]}', b'{"argv": []}', b"not json"):
        with pytest.raises(InvalidInput, match="args"):
            app.plugins.call("argv", "@exec", bad)


def test_a_plugin_granted_a_command_enqueues_its_runs(app: OmniApp) -> None:
    _load(app, "argv", _LIST.format(kind="args"))
    app.plugins.load(tasks_wasm(), grants={"kv": {}, "tasks": {"commands": ["argv"]}})
    job_id = enq(app, "@exec:argv", b'{"args": ["from", "a plugin"]}')
    assert job_id > 0
    job = _ended(app, job_id)
    assert job.plugin == "argv" and job.handler == "@exec" and job.state == "succeeded"
    assert json.loads(job.result or b"")["stdout"] == "argv\0from\0a plugin\0"
    # Only the commands its grant names.
    _load(app, "stdio", _STDIO)
    assert enq(app, "@exec:stdio") == Status.DENIED
    with pytest.raises(ConfigError, match=r"grant\.tasks\.commands"):
        app.plugins.load(tasks_wasm("bad"), grants={"kv": {}, "tasks": {"commands": "argv"}})
