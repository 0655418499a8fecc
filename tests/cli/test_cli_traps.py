"""The CLI's traps a new user met (issue 48), each through the real `omnicore` command: a
plugin name with --app shadowed by a folder of that name, a workflow "ok" that had not checked
its handlers, a typo in mcp.expose served silently, and `omnicore dev` beside a running host."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from omnicore.cli.remote import Remote, RemoteError
from tests.host_fixtures import config_wasm, echo_wasm, write
from tests.hosts import Host
from tests.waiting import Logged, eventually


def omnicore(*args: str, cwd: Path, stdin: str | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "omnicore.cli", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=timeout, input=stdin)


@pytest.fixture
def appdir(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    (app / "plugins").mkdir(parents=True)
    (app / "omnicore.yaml").write_text("name: traps\ndata_dir: data\nplugins_dir: plugins\n")
    write(app / "plugins", "conf.wasm", config_wasm("conf"))
    write(app / "plugins", "echo.wasm", echo_wasm("echo"))
    return app


def test_inspect_a_name_with_app_means_the_plugin_even_beside_a_folder_of_that_name(
        tmp_path: Path, appdir: Path) -> None:
    (tmp_path / "conf").mkdir()  # the reporter had a source folder named like the plugin
    done = omnicore("inspect", "conf", "--app", str(appdir), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "is a directory" not in done.stderr
    assert "plugin      conf" in done.stdout, done.stdout
    # Without --app, a folder is not a plugin: said in one line.
    done = omnicore("inspect", "conf", cwd=tmp_path)
    assert done.returncode == 1
    assert "conf is a directory: name a .wasm file, or a plugin of an app with --app DIR" \
        in done.stderr, done.stderr


def test_workflows_validate_without_an_app_says_it_did_not_check_handlers(
        tmp_path: Path, appdir: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text("format: omniflow/v1\nname: flow\nsteps:\n"
                    "  - {id: a, uses: plugin:echo/no_such_handler}\n")
    done = omnicore("workflows", "validate", str(flow), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "ok — workflow flow, 1 step(s)" in done.stdout
    assert "handlers and connectors were not checked (no --app: give --app DIR to check " \
        "them)" in done.stdout, done.stdout
    # With the app, the handler is checked (and the note is gone).
    done = omnicore("workflows", "validate", str(flow), "--app", str(appdir), cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    assert "no_such_handler" in done.stderr
    assert "not checked" not in done.stdout + done.stderr


@pytest.mark.parametrize("pattern, says", [
    ("echo/vesion", "'echo/vesion' matches no handler (echo: echo, version, "),
    ("ecko/*", "'ecko/*' names no plugin of the app (plugins: conf, echo)"),
])
def test_a_typo_in_mcp_expose_is_refused_naming_the_key(appdir: Path, pattern: str,
                                                        says: str) -> None:
    config = appdir / "omnicore.yaml"
    config.write_text(config.read_text() + f"mcp:\n  expose: [conf/get, '{pattern}']\n")
    done = omnicore("mcp", "--app", str(appdir), cwd=appdir, stdin="")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"Error: mcp.expose ({config}:" in done.stderr, done.stderr
    assert says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_mcp_expose_without_a_typo_serves(appdir: Path) -> None:
    config = appdir / "omnicore.yaml"
    config.write_text(config.read_text() + "mcp:\n  expose: [conf/get, 'e*/*']\n")
    done = omnicore("mcp", "--app", str(appdir), cwd=appdir, stdin="")
    assert "mcp.expose" not in done.stderr, done.stderr


def _answer(remote: Remote) -> str:
    try:
        return remote.call("echo", "version", b"").decode()
    except RemoteError as exc:
        return exc.type


def _threads_taking_sigint(pid: int) -> list[int]:
    """The threads of ``pid`` that do not block SIGINT (one of them gets a Ctrl-C)."""
    taking = []
    for tid in sorted(int(t) for t in os.listdir(f"/proc/{pid}/task")):
        try:
            status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
        except FileNotFoundError:  # ended meanwhile
            continue
        blocked = int(next(line.split()[1] for line in status.splitlines()
                           if line.startswith("SigBlk:")), 16)
        if not blocked & (1 << (signal.SIGINT - 1)):
            taking.append(tid)
    return taking


@pytest.mark.timeout(600)
def test_dev_beside_a_running_host_builds_into_it_instead_of_failing(
        tmp_path: Path, appdir: Path) -> None:
    """`omnicore dev SRC --app DIR` while `omnicore run DIR` serves it used to exit with
    "data dir in use"; now it builds into the running host's plugins folder, which reloads."""
    from omnicore.toolchains import c, scaffold

    assert c.check() is None  # the set-up installs the C toolchain
    scaffold(tmp_path / "src" / "hello", "hello", "c")
    (appdir / "omnicore.yaml").write_text(
        "name: traps\ndata_dir: data\nplugins_dir: plugins\nconsole: {port: 0}\n"
        "plugins:\n  hello: {grants: [config], config: {greeting: Hi}}\n")
    log = tmp_path / "dev.log"
    with Host(appdir).start() as host:
        remote = host.remote(timeout=180)
        with log.open("w") as out:
            dev = subprocess.Popen(
                [sys.executable, "-m", "omnicore.cli", "dev", str(tmp_path / "src"), "--app",
                 str(appdir), "--out", str(tmp_path / "out"), "--interval", "0.2"],
                cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        both = [host, Logged(dev, log)]
        try:
            def greeting() -> str:
                try:
                    return remote.call("hello", "greet", b'{"name": "Ada"}').decode()
                except RemoteError as exc:
                    return exc.type

            eventually(lambda: "Hi, Ada!" in greeting(), "the first build served",
                       timeout=180, every=0.2, watch=both)
            # (Said once its watcher runs, which may be after the first build was served.)
            eventually(lambda: f"the host already running at {remote.url} serves {appdir}"
                       in log.read_text(), "dev naming the running host", watch=both)
            assert "in use" not in log.read_text()
            source = tmp_path / "src" / "hello" / "plugin.c"
            source.write_text(source.read_text().replace('"%s, %s!"', '"%s, %s!!"'))
            eventually(lambda: "Hi, Ada!!" in greeting(), "the rebuild served", every=0.2,
                       watch=both)
            # Ctrl-C's SIGINT goes to whichever thread of the process that does not block it
            # the kernel picks; a main thread it did not reach waited an hour before noticing.
            # Only the main thread takes it.
            eventually(lambda: "hello: built in" in log.read_text(), "the rebuild's end",
                       watch=both)
            assert _threads_taking_sigint(dev.pid) == [dev.pid]
            dev.send_signal(signal.SIGINT)
            assert dev.wait(30) == 0, log.read_text()
            assert host.alive()  # the host keeps running
            assert "Hi, Ada!!" in greeting()
        finally:
            if dev.poll() is None:
                dev.kill()
                dev.wait(10)
