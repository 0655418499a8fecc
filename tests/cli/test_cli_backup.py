"""``omnicore backup`` / ``omnicore restore`` on a real embedded app: the backup is taken while
its host runs and a writer keeps writing, and a fresh app restored from it serves the data
(kv, jobs, users, secrets opening with the same key)."""

from __future__ import annotations

import threading
from pathlib import Path

from click.testing import CliRunner

from omnicore import OmniApp
from omnicore.accounts.users import UserStore
from omnicore.cli import main
from omnicore.config import load_config

PASSWORD = "correct horse battery"


def invoke(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def make_app(root: Path) -> Path:
    root.mkdir()
    (root / "omnicore.yaml").write_text("name: b\ndata_dir: data\nplugins_dir: plugins\n"
                                        "console: {enabled: false}\n")
    return root


def start(appdir: Path) -> OmniApp:
    app = OmniApp(config=load_config(appdir / "omnicore.yaml"))
    app.start()
    return app


def test_a_backup_of_a_running_host_restores_into_a_fresh_app(tmp_path: Path) -> None:
    source = make_app(tmp_path / "source")
    app = start(source)
    kv = app.kv.for_plugin("notes")
    kv.set("greeting", b"hello")
    job = app.jobs.enqueue("notes", "later", b"{}", delay_s=3600)
    app.secrets.set("API_TOKEN", "s3cret")
    UserStore(app.storage.users).add("ada", PASSWORD, "admin")
    stop, going, written = threading.Event(), threading.Event(), [0]

    def writer() -> None:  # the host keeps writing while the backup is taken
        while not stop.is_set():
            written[0] += 1
            kv.set(f"n{written[0]}", b"x" * 512)
            if written[0] == 10:
                going.set()
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        assert going.wait(30)
        archive = tmp_path / "app.tar.gz"
        code, out, err = invoke("backup", str(archive), "--app", str(source))
        assert code == 0, err
        assert out == f"backed up omnicore.db, console.db, secret.key to {archive}\n"
        # The host holds the data dir: a restore into it is refused, naming it.
        code, _, err = invoke("restore", str(archive), "--app", str(source), "--force")
        assert code == 1 and "is in use by another host" in err
    finally:
        stop.set()
        thread.join()
        app.stop()
    assert written[0] > 0 and archive.stat().st_mode & 0o077 == 0

    target = make_app(tmp_path / "target")
    code, out, err = invoke("restore", str(archive), "--app", str(target))
    assert code == 0, err
    assert out == f"restored omnicore.db, console.db, secret.key from {archive}\n"
    copy = start(target)
    try:
        kept = copy.kv.for_plugin("notes")
        assert kept.get("greeting") == b"hello"
        n = sum(1 for k in kept.list("n", limit=100_000))
        assert 0 < n <= written[0]
        assert all(kept.get(f"n{i}") == b"x" * 512 for i in range(1, n + 1))  # no gaps: one moment
        queued = copy.jobs.get(job)
        assert queued is not None and queued.handler == "later" and queued.state == "queued"
        assert copy.secrets.get("API_TOKEN") == b"s3cret"
        assert UserStore(copy.storage.users).authenticate("ada", PASSWORD) is not None
    finally:
        copy.stop()
    # A second restore over data needs --force.
    code, _, err = invoke("restore", str(archive), "--app", str(target))
    assert code == 1 and "pass --force" in err
    assert invoke("restore", str(archive), "--app", str(target), "--force")[0] == 0


def test_backup_says_what_to_use_for_postgresql(tmp_path: Path) -> None:
    appdir = make_app(tmp_path / "app")
    (appdir / "omnicore.yaml").write_text(
        "name: b\nstorage: {url: 'postgresql://u@db/omnicore'}\n")
    code, _, err = invoke("backup", str(tmp_path / "x.tar"), "--app", str(appdir))
    assert code == 1 and "pg_dump -Fc" in err
    code, _, err = invoke("backup", str(tmp_path / "x.tar"), "--app", str(tmp_path))
    assert code == 1 and "no omnicore.yaml" in err
