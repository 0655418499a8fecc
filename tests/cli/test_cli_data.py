"""``omnicore kv`` and ``omnicore jobs`` (``omnicore tasks``, its old name) against a real app
data dir."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from omnicore.cli import main
from omnicore.storage import JobSpec, open_storage
from tests.waiting import eventually


def invoke(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def make_app(tmp_path: Path) -> Path:
    appdir = tmp_path / "app"
    appdir.mkdir()
    (appdir / "omnicore.yaml").write_text("name: t\ndata_dir: data\n")
    return appdir


def test_kv_set_get_list_delete(tmp_path: Path) -> None:
    app = str(make_app(tmp_path))
    assert invoke("kv", "set", "p", "greeting", "hello", "--app", app)[0] == 0
    assert invoke("kv", "set", "p", "count", "3", "--app", app)[0] == 0
    assert invoke("kv", "get", "p", "greeting", "--app", app)[1] == "hello"
    assert invoke("kv", "list", "p", "--app", app)[1].split() == ["count", "greeting"]
    assert json.loads(invoke("kv", "list", "p", "gr", "--app", app, "--json")[1]) == ["greeting"]
    assert invoke("kv", "list", "other", "--app", app)[1] == ""  # scoped per plugin
    assert invoke("kv", "delete", "p", "greeting", "--app", app)[0] == 0
    code, _, err = invoke("kv", "get", "p", "greeting", "--app", app)
    assert code == 1 and "no key 'greeting'" in err
    code, _, err = invoke("kv", "delete", "p", "greeting", "--app", app)
    assert code == 1


def test_kv_needs_an_app(tmp_path: Path) -> None:
    code, _, err = invoke("kv", "list", "p", "--app", str(tmp_path))
    assert code == 1 and "no omnicore.yaml" in err


def test_jobs_list_show_cancel_retry(tmp_path: Path) -> None:
    appdir = make_app(tmp_path)
    store = open_storage(appdir / "data")
    queued = store.queue.add(JobSpec("p", "work", b'{"n": 1}', 4e9))
    dead = store.queue.add(JobSpec("p", "boom", b"", 0.0, max_attempts=1))
    task = store.queue.claim("w", 1e9 + 1, 30)
    assert task is not None and task.id == dead
    store.queue.fail(dead, "w", 1e9 + 2, "GuestError: boom", None)
    store.close()
    app = str(appdir)
    code, out, _ = invoke("jobs", "list", "--app", app)
    assert code == 0 and "dead" in out and "p.boom" in out and "GuestError: boom" in out
    listed = json.loads(invoke("jobs", "list", "--state", "queued", "--json", "--app", app)[1])
    assert [t["id"] for t in listed] == [queued]
    shown = json.loads(invoke("jobs", "show", str(queued), "--app", app)[1])
    assert shown["payload"] == '{"n": 1}' and shown["state"] == "queued"
    assert invoke("jobs", "cancel", str(queued), "--app", app)[0] == 0
    code, _, err = invoke("jobs", "cancel", str(queued), "--app", app)
    assert code == 1 and f"job {queued} is cancelled: only queued jobs can be cancelled" in err
    assert invoke("jobs", "retry", str(dead), "--app", app)[0] == 0
    code, _, err = invoke("jobs", "retry", str(dead), "--app", app)
    assert code == 1 and f"job {dead} is queued: only dead or cancelled jobs can be retried" in err
    code, _, err = invoke("jobs", "cancel", "999", "--app", app)
    assert code == 1 and "no job 999" in err
    assert json.loads(invoke("jobs", "show", str(dead), "--app", app)[1])["state"] == "queued"
    code, _, err = invoke("jobs", "show", "999", "--app", app)
    assert code == 1 and "no job 999" in err


def test_the_old_names_enqueue_with_the_app_defaults_and_say_so_once(tmp_path: Path) -> None:
    # `omnicore tasks` and `capabilities.tasks`: what operators wrote before the rename.
    appdir = make_app(tmp_path)
    (appdir / "omnicore.yaml").write_text("name: t\ndata_dir: data\n"
                                          "capabilities: {tasks: {max_attempts: 2, poll_s: 1}}\n")
    code, out, err = invoke("tasks", "enqueue", "p", "note", '{"text": "hi"}', "--delay", "60",
                            "--app", str(appdir))
    assert code == 0 and out.startswith("job 1 queued: p.note")
    assert [ln for ln in err.splitlines() if "deprecated" in ln] == [
        "omnicore tasks is deprecated: use omnicore jobs (the same commands)"]
    store = open_storage(appdir / "data")
    try:
        task = store.queue.get(1)
        assert task is not None and task.state == "queued" and task.max_attempts == 2
        assert task.payload == b'{"text": "hi"}' and task.source == "operator"
        assert task.run_at > task.created_at + 59
    finally:
        store.close()
    code, _, err = invoke("tasks", "enqueue", "p", "note", "--delay", "-1", "--app", str(appdir))
    assert code == 2 and "--delay" in err
    code, _, err = invoke("jobs", "list", "--app", str(appdir))
    assert code == 0 and "deprecated" not in err


def test_jobs_enqueue_goes_through_the_running_host(tmp_path: Path) -> None:
    from tests.console.conftest import start_host
    from tests.console.test_jobs import ticker_wasm

    host = start_host(tmp_path / "host", None)
    try:
        (host.plugins_dir / "ticker.toml").write_text('grants = ["kv", "tasks", "events"]\n')
        (host.plugins_dir / "ticker.wasm").write_bytes(ticker_wasm())
        assert host.app.plugins.folder is not None
        host.app.plugins.folder.sync()
        appdir = tmp_path / "app"
        appdir.mkdir()
        (appdir / "omnicore.yaml").write_text(f"name: t\ndata_dir: {tmp_path / 'host/data'}\n")
        # A handler the plugin lacks: the host says so (the storage path would queue it).
        code, _, err = invoke("jobs", "enqueue", "ticker", "nope", "--app", str(appdir))
        assert code == 1 and "its handlers: on_event, tick" in err
        code, out, _ = invoke("jobs", "enqueue", "ticker", "tick", "hi", "--app", str(appdir))
        assert code == 0 and out == "job 1 queued: ticker.tick\n"
        eventually(lambda: (job := host.app.jobs.get(1)) is not None
                   and job.state == "succeeded", "job 1 succeeded")
        code, out, _ = invoke("jobs", "list", "--app", str(appdir))
        header, row = out.splitlines()
        assert header.split()[3] == "OWNER" and row.split()[3] == host.app.runtime_id
        audit = host.app.storage.audit.entries(action_prefix="task.enqueue")
        assert [(a.target, a.origin) for a in audit] == [("task:1", "127.0.0.1, API token")]
    finally:
        host.app.stop()
