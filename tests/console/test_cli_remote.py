"""``omnicore call/inspect NAME --app DIR`` use the running host's API when its console is up,
and say on stderr which way they went."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from omnicore.cli import main
from tests.console.conftest import Host, start_host
from tests.host_fixtures import echo_wasm, write
from tests.waiting import eventually


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def appdir_for(host: Host, tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "omnicore.yaml").write_text(
        f"name: remote-test\ndata_dir: {host.app.data_dir}\nplugins_dir: {host.plugins_dir}\n")
    return tmp_path


def test_call_goes_through_the_running_host(host: Host, tmp_path: Path) -> None:
    app = appdir_for(host, tmp_path)
    # Granted on the running host only (not in the sidecar): an embedded call could not see it.
    host.app.plugins.grant("greeter-rust", "config", persist=False)
    code, out, err = run("call", "greeter-rust", "greet", "--app", str(app),
                         "--input", '{"name": "Ada"}', "-v")
    assert code == 0, err
    assert json.loads(out) == {"message": "Hello, Ada!"}
    assert f"on the running host at {host.url}" in err
    assert "[info] greeting Ada" in err  # the plugin's own line of this call
    assert host.app.plugins.get("greeter-rust").stats.calls == 1  # type: ignore[union-attr]

    code, out, err = run("inspect", "greeter-rust", "--app", str(app))
    assert code == 0 and "[loaded]" in out and "running host" in err

    code, out, err = run("call", "greeter-rust", "nope", "--app", str(app))
    assert code == 1 and "HandlerNotFound" in err


def test_call_says_when_it_runs_embedded(host: Host, tmp_path: Path) -> None:
    app = appdir_for(host, tmp_path)
    code, _out, err = run("call", "greeter-rust", "greet", "--app", str(app), "--embedded",
                          "--grant", "config", "--input", "{}")
    assert code == 0 and "running host" not in err
    host.app.stop()  # the console goes away, and so does console.json
    assert not (host.app.data_dir / "console.json").exists()
    code, out, err = run("call", "greeter-rust", "greet", "--app", str(app), "--grant",
                         "config", "--input", '{"name": "Bo"}')
    assert code == 0, err
    assert "no running host for this app" in err and "embedded" in err
    assert json.loads(out) == {"message": "Hello, Bo!"}


def test_remote_url_with_a_token(host: Host) -> None:
    host.app.plugins.grant("greeter-rust", "config")
    code, out, err = run("call", "greeter-rust", "greet", "--remote", host.url, "--input",
                         '{"name": "Cy"}', env={"OMNICORE_TOKEN": host.admin_token})
    assert code == 0 and json.loads(out) == {"message": "Hello, Cy!"}, err
    code, out, err = run("call", "greeter-rust", "greet", "--remote", host.url,
                         env={"OMNICORE_TOKEN": "oc_wrong"})
    assert code == 1 and "Unauthorized" in err
    code, out, err = run("call", "greeter-rust", "greet", "--remote", host.url,
                         env={"OMNICORE_TOKEN": host.viewer_token})
    assert code == 1 and "viewer" in err


def test_logs_lists_and_follows_a_plugins_lines_on_the_running_host(
        host: Host, tmp_path: Path) -> None:
    import subprocess
    import sys
    import threading

    app = appdir_for(host, tmp_path)
    host.app.plugins.grant("greeter-rust", "config", persist=False)
    host.app.plugins.call_json("greeter-rust", "greet", {"name": "Ada"})
    code, out, err = run("logs", "greeter-rust", "--app", str(app))
    assert code == 0, err
    assert out.rstrip().endswith("[info] greeting Ada")

    omnicore = Path(sys.executable).parent / "omnicore"
    follower = subprocess.Popen([str(omnicore), "logs", "greeter-rust", "--app", str(app),
                                 "-f", "-n", "1"], stdout=subprocess.PIPE, text=True)
    try:
        assert follower.stdout is not None
        assert "greeting Ada" in follower.stdout.readline()  # the listing
        seen: list[str] = []

        def read_one() -> None:
            seen.append(follower.stdout.readline())  # type: ignore[union-attr]

        reader = threading.Thread(target=read_one, daemon=True)
        reader.start()
        # Call until the follower has attached and printed the new line.
        for _ in range(200):
            host.app.plugins.call_json("greeter-rust", "greet", {"name": "Grace"})
            reader.join(0.05)
            if seen:
                break
        assert seen and "[info] greeting Grace" in seen[0]
    finally:
        follower.terminate()
        follower.wait(10)
        if follower.stdout is not None:
            follower.stdout.close()


def test_logs_without_a_running_host_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "omnicore.yaml").write_text("name: idle\n")
    code, _out, err = run("logs", "greeter-rust", "--app", str(tmp_path))
    assert code == 1 and "no running host for the app" in err and "omnicore run" in err


def test_one_input_limit_over_rest_and_the_cli(host: Host, tmp_path: Path) -> None:
    app = appdir_for(host, tmp_path)
    host.app.plugins.grant("greeter-rust", "config", persist=False)
    big = tmp_path / "big.json"
    name = "a" * (2 << 20)  # 2 MiB: over the JSON cap of other routes, under the plugin's 16
    big.write_text(json.dumps({"name": name}))
    code, out, err = run("call", "greeter-rust", "greet", "--app", str(app), "--input-file",
                         str(big))
    assert code == 0, err[-500:]
    assert json.loads(out) == {"message": f"Hello, {name}!"}

    with host.client(host.admin_token) as admin:
        r = admin.put("/api/v1/plugins/greeter-rust/limits",
                      json={"limits": {"max_input_bytes": 1 << 20}})
        assert r.status_code == 200, r.text
        # The host refuses it before reading it whole, naming the cap and the setting.
        r = admin.post("/api/v1/plugins/greeter-rust/invoke",
                       json={"handler": "greet", "input": big.read_text()})
        assert r.status_code == 413 and r.json()["error"]["type"] == "InputTooLarge"
        message = r.json()["error"]["message"]
        assert "limits.max_input_bytes (1048576 bytes)" in message
        assert "plugins.greeter-rust.limits" in message
    code, out, err = run("call", "greeter-rust", "greet", "--app", str(app), "--input-file",
                         str(big))
    assert code == 1 and out == ""
    assert "exceeds limits.max_input_bytes (1048576)" in err
    assert "omnicore settings limits greeter-rust max_input_bytes=N" in err
    assert "Broken pipe" not in err


class _HeldCompile:
    """While ``gate`` is shut, the running host's compile of ``late.wasm`` waits: the plugin
    stays ``compiling`` for as long as the test wants (a fast machine compiles it at once)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import omnicore.plugins.linking as linking
        from omnicore.sandbox.module import PluginModule

        self.gate = threading.Event()
        gate = self.gate

        class Held(PluginModule):
            @classmethod
            def load(cls, engine: Any, source: Any, name: Any = None,
                     **kw: Any) -> PluginModule:
                if isinstance(source, (str, Path)) and Path(source).name == "late.wasm":
                    assert gate.wait(120), "the test never opened the gate"
                return PluginModule.load(engine, source, name, **kw)

        monkeypatch.setattr(linking, "PluginModule", Held)


@pytest.fixture
def bare_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Host, Any]]:
    held = _HeldCompile(monkeypatch)
    h = start_host(tmp_path / "host", None)
    try:
        yield h, held
    finally:
        held.gate.set()
        h.app.stop()


def test_call_waits_while_the_running_host_compiles_the_plugin(
        bare_host: tuple[Host, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin dropped a moment ago is first unknown to the host, then compiling: `omnicore
    call` waits through both (it said "still compiling" and failed before); once the host
    shows it compiling, the host itself holds the call until it loads (issue 63: a call to a
    plugin still loading waits for it, plugins.arrivals)."""
    from omnicore.cli.remote import Remote, RemoteError

    host, held = bare_host
    app = appdir_for(host, host.plugins_dir.parent)  # its plugins folder: DIR/plugins
    seen: list[tuple[str, int]] = []
    call = Remote.call

    def answered(self: Remote, *args: Any, **kw: Any) -> Any:
        try:
            return call(self, *args, **kw)
        except RemoteError as exc:
            seen.append((exc.type, exc.status))
            raise

    def open_once_held() -> None:
        eventually(lambda: host.app.plugins.waiting >= 1, "the host holding the call")
        held.gate.set()  # the host holds the call: now let the compile finish

    monkeypatch.setattr(Remote, "call", answered)
    opener = threading.Thread(target=open_once_held)
    opener.start()
    write(host.plugins_dir, "late.wasm", echo_wasm("late"))
    code, out, err = run("call", "late", "echo", "--app", str(app), "--input", "hi")
    opener.join(60)
    assert code == 0, err
    assert out == "hi\n"
    assert ("PluginCompiling", 503) not in seen  # the host waited, it did not answer 503


def test_call_stops_waiting_for_a_compile_after_its_bound(
        bare_host: tuple[Host, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import omnicore.cli.plugins as cli_plugins

    host, _held = bare_host  # the gate stays shut: the compile never ends
    app = appdir_for(host, host.plugins_dir.parent)  # its plugins folder: DIR/plugins
    monkeypatch.setattr(cli_plugins, "COMPILE_WAIT", 0.5)
    host.app.plugins.load_wait_s = 0.1  # the host's own wait (sandbox.load_wait_ms) ends first
    write(host.plugins_dir, "late.wasm", echo_wasm("late"))
    eventually(lambda: any(i.name == "late" and i.state == "compiling"
                           for i in host.app.plugins))
    code, _out, err = run("call", "late", "echo", "--app", str(app), "--input", "hi")
    assert code == 1
    assert "PluginCompiling" in err and "still compiling" in err, err
