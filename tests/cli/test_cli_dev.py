"""``omnicore dev``: a real C plugin project built by the real toolchain, served by a real
host in a subprocess, and a saved edit built again and served by that same host; a save
that breaks the build leaves the running version serving and says why."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from omnicore.cli.remote import Remote, RemoteError, find_running
from omnicore.toolchains import c, scaffold
from tests.waiting import eventually

pytestmark = pytest.mark.timeout(600)


def _answer(remote: Remote) -> str:
    try:
        return json.loads(remote.call("hello", "greet", b'{"name": "Ada"}'))["message"]
    except RemoteError as exc:
        return exc.type


def _until(what: str, check: Callable[[], object], proc: subprocess.Popen[str],
           timeout: float = 180) -> None:
    eventually(check, f"omnicore dev: {what}", watch=[proc], timeout=timeout, every=0.1)


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[tuple[Path, Remote, subprocess.Popen[str], Path]]:
    problem = c.check()
    assert problem is None, problem  # the set-up installs the C toolchain: never skipped
    project = tmp_path / "src" / "hello"
    scaffold(project, "hello", "c")
    app = tmp_path / "app"
    app.mkdir()
    (app / "omnicore.yaml").write_text(
        "name: dev-test\ndata_dir: data\nplugins_dir: plugins\nconsole: {port: 0}\n"
        "plugins:\n  hello: {grants: [config], config: {greeting: Hi}}\n")
    log = tmp_path / "dev.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "omnicore.cli", "dev", str(tmp_path / "src"), "--app",
             str(app), "--out", str(tmp_path / "out"), "--interval", "0.2"],
            cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        remote: Remote | None = None

        def up() -> bool:
            nonlocal remote
            remote = find_running(app / "data")
            return remote is not None

        _until("the host", up, proc)
        assert remote is not None
        _until("the first build to serve", lambda: _answer(remote) == "Hi, Ada!", proc)
        yield project, remote, proc, log
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_a_saved_edit_is_built_and_served_by_the_running_host(
        dev: tuple[Path, Remote, subprocess.Popen[str], Path]) -> None:
    project, remote, proc, log = dev
    source = project / "plugin.c"
    source.write_text(source.read_text().replace('"%s, %s!"', '"%s, %s!!"'))
    _until("the edit to serve", lambda: _answer(remote) == "Hi, Ada!!", proc)
    # Said once the new file is in the cache too, which may be after the host serves it.
    _until("the build's report", lambda: "hello: built in" in log.read_text(), proc)
    # A save that does not compile: the running version keeps serving, the log says why.
    source.write_text(source.read_text().replace("OMNI_HANDLER(greet, input) {",
                                                 "OMNI_HANDLER(greet, input) { nonsense;"))
    _until("the failed build", lambda: "keeps serving" in log.read_text(), proc)
    assert "nonsense" in log.read_text()  # the compiler's own error
    assert _answer(remote) == "Hi, Ada!!"
    # Fixed again: served again.
    source.write_text(source.read_text().replace(" nonsense;", "").replace('"%s, %s!!"',
                                                                         '"%s; %s"'))
    _until("the fix to serve", lambda: _answer(remote) == "Hi; Ada", proc)


def test_a_source_replaced_with_the_same_size_and_time_is_seen(tmp_path: Path) -> None:
    """A checkout or an unpacked archive that keeps times puts a new text of the same length
    in place by a rename: the watch compared size and mtime alone and never built it."""
    from omnicore.cli.dev import _files

    source = tmp_path / "main.c"
    source.write_text('const char *GREETING = "Hi";\n')
    before, st = _files(tmp_path), source.stat()
    staged = tmp_path / "main.c.new"
    staged.write_text('const char *GREETING = "Yo";\n')
    os.utime(staged, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(staged, source)
    after = source.stat()
    assert (after.st_size, after.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert _files(tmp_path) != before
