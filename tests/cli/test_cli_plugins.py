"""`omnicore inspect` and `omnicore call`: through CliRunner, and once for real against a
running `omnicore run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from omnicore.cli import main
from tests.component_fixtures import wat_component
from tests.host_fixtures import config_wasm, echo_wasm, write
from tests.hosts import Host

OMNICORE = Path(sys.executable).parent / "omnicore"


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def files(tmp_path: Path) -> Path:
    write(tmp_path, "echo.wasm", echo_wasm())
    write(tmp_path, "conf.wasm", config_wasm("conf"))
    write(tmp_path, "junk.wasm", b"\x00asm\x01\x00\x00\x00\x05\xff\xff")
    return tmp_path


@pytest.fixture
def appdir(tmp_path: Path) -> Path:
    app = tmp_path / "app"
    (app / "plugins").mkdir(parents=True)
    (app / "omnicore.yaml").write_text(
        "name: cli-test\nplugins_dir: plugins\ndata_dir: .omnicore\n"
        "plugins:\n  conf:\n    grants: [config]\n    config: {who: app, where: app}\n")
    write(app / "plugins", "conf.wasm", config_wasm("conf"))
    write(app / "plugins", "other-file.wasm", echo_wasm("renamed"))
    return app


def test_inspect_text(runner: CliRunner, files: Path) -> None:
    result = runner.invoke(main, ["inspect", str(files / "echo.wasm")])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "plugin      echo 1.0.0" in out
    assert "handlers    echo, version, fail, trap, spin, slow" in out
    assert "omni_alloc (func (i32) -> i32)" in out
    assert "abi         1" in out and "608 bytes" in out
    assert "would load  yes" in out


def test_inspect_groups_imports_and_says_what_to_grant(runner: CliRunner, files: Path) -> None:
    result = runner.invoke(main, ["inspect", str(files / "conf.wasm")])
    assert result.exit_code == 0
    assert "omnicore:config: get" in result.output
    assert "would load  needs grant: omnicore:config  (try --grant config)" in result.output
    assert result.stderr == ""  # said once, in the report, not again as a log warning
    result = runner.invoke(main, ["inspect", str(files / "conf.wasm"), "--grant", "config"])
    assert "would load  yes" in result.output


def test_inspect_json(runner: CliRunner, files: Path) -> None:
    result = runner.invoke(main, ["inspect", "--json", str(files / "conf.wasm")])
    assert result.exit_code == 0
    report = json.loads(result.output)
    assert report["state"] == "needs-grant" and report["missing"] == ["omnicore:config"]
    assert report["imports"] == {"omnicore:config": ["get"]}
    assert report["abi"] == 1 and report["manifest"]["name"] == "conf"
    assert report["ok"] is False and report["error_type"] == "NeedsGrant"


@pytest.mark.parametrize("content", [b"", b"random bytes here", b"\x00asm\x01\x00\x00\x00\x05\xff"])
def test_inspect_bad_files(runner: CliRunner, tmp_path: Path, content: bytes) -> None:
    path = write(tmp_path, "bad.wasm", content)
    result = runner.invoke(main, ["inspect", str(path)])
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: plugin 'bad': ") and result.stdout == ""
    result = runner.invoke(main, ["inspect", "--json", str(path)])
    assert json.loads(result.output)["ok"] is False


def test_inspect_and_call_refuse_a_hostile_manifest_in_one_line(runner: CliRunner,
                                                                tmp_path: Path) -> None:
    from omnicore.sandbox import wasmbin

    deep = wasmbin.set_custom_section(echo_wasm(), "omnicore.manifest",
                                      b"[" * 100_000 + b"]" * 100_000)
    path = write(tmp_path, "deep.wasm", deep)
    for args in (["inspect", str(path)], ["call", str(path), "echo"]):
        result = runner.invoke(main, args)
        assert result.exit_code == 1, args
        [line] = result.stderr.splitlines()
        assert line == ("Error: plugin 'deep': the 'omnicore.manifest' section is nested too "
                        "deeply (at most 32 levels)"), args


def test_inspect_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["inspect", str(tmp_path / "nope.wasm")])
    assert result.exit_code == 1
    assert "no such plugin file" in result.stderr


def test_call_a_file(runner: CliRunner, files: Path, tmp_path: Path) -> None:
    result = runner.invoke(main, ["call", str(files / "echo.wasm"), "echo", "--input", "héllo"])
    assert result.exit_code == 0, result.stderr
    assert result.stdout_bytes == "héllo\n".encode()  # text: a newline after it
    blob = tmp_path / "in.bin"
    blob.write_bytes(bytes(range(256)))
    result = runner.invoke(main, ["call", str(files / "echo.wasm"), "echo", "--input-file",
                                  str(blob)])
    assert result.stdout_bytes == bytes(range(256))  # binary: exactly its bytes
    result = runner.invoke(main, ["call", str(files / "echo.wasm"), "echo", "--input-file", "-"],
                           input=b"from stdin")
    assert result.stdout_bytes == b"from stdin\n"


def test_call_ends_text_with_a_newline_and_keeps_binary_exact(files: Path,
                                                              tmp_path: Path) -> None:
    """Text output gets a newline, so a prompt or a pipe's next line starts on its own line;
    binary output piped or redirected is the bytes for another program, kept exact; on a
    terminal it gets the newline too."""
    import pty

    blob = tmp_path / "in.bin"
    blob.write_bytes(b"\x89PNG\x00\xff")
    call = [str(OMNICORE), "call", str(files / "echo.wasm"), "echo"]
    env = {**os.environ, "OMNICORE_CACHE_DIR": str(tmp_path / "cache")}
    piped = subprocess.run([*call, "--input", "héllo"], capture_output=True, env=env,
                           timeout=60)
    assert piped.stdout == "héllo\n".encode()
    for args, expect in ((["--input", "text"], b"text\n"),
                         (["--input-file", str(blob)], b"\x89PNG\x00\xff")):
        out = tmp_path / "out"
        with out.open("wb") as sink:
            done = subprocess.run([*call, *args], stdout=sink, env=env, timeout=60)
        assert done.returncode == 0 and out.read_bytes() == expect
    assert subprocess.run([*call, "--input", "ends\n"], capture_output=True, env=env,
                          timeout=60).stdout == b"ends\n"  # never a second one
    main_fd, follower = pty.openpty()
    try:
        done = subprocess.run([*call, "--input-file", str(blob)], stdout=follower,
                              stderr=subprocess.DEVNULL, env=env, timeout=60)
        assert done.returncode == 0
        assert os.read(main_fd, 100).endswith(b"\n")  # the prompt on a line of its own
    finally:
        os.close(main_fd)
        os.close(follower)


def test_call_guest_error_and_limits_are_one_line(runner: CliRunner, files: Path) -> None:
    result = runner.invoke(main, ["call", str(files / "echo.wasm"), "fail"])
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == "Error: plugin 'echo' handler 'fail' failed: the plugin says no\n"
    (files / "echo.toml").write_text("[limits]\ntimeout_ms = 50\n")
    result = runner.invoke(main, ["call", str(files / "echo.wasm"), "spin"])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1
    assert "exceeded its deadline of 50 ms (limits.timeout_ms)" in result.stderr
    result = runner.invoke(main, ["call", str(files / "echo.wasm"), "nope"])
    assert result.exit_code == 1 and "nope" in result.stderr


def test_call_needs_grant_then_grant_and_config(runner: CliRunner, files: Path) -> None:
    conf = str(files / "conf.wasm")
    result = runner.invoke(main, ["call", conf, "get", "--input", "a"])
    assert result.exit_code == 1
    assert "needs grant: omnicore:config" in result.stderr and "--grant config" in result.stderr
    result = runner.invoke(main, ["call", conf, "get", "--input", "db", "--grant", "config",
                                  "--config", "db.host=x", "--config", "db.port=5432"])
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"host": "x", "port": 5432}


def test_call_bad_input_options(runner: CliRunner, files: Path) -> None:
    echo = str(files / "echo.wasm")
    result = runner.invoke(main, ["call", echo, "echo", "--input", "a", "--input-file", echo])
    assert result.exit_code == 2 and "not both" in result.stderr
    result = runner.invoke(main, ["call", echo, "echo", "--grant", "http={bad"])
    assert result.exit_code == 2 and "must be a JSON object" in result.stderr
    result = runner.invoke(main, ["call", echo, "echo", "--config", "novalue"])
    assert result.exit_code == 2 and "KEY=VALUE" in result.stderr
    result = runner.invoke(main, ["call", echo, "echo", "--grant", "warpdrive"])
    assert result.exit_code == 1 and "unknown capability 'warpdrive'" in result.stderr
    result = runner.invoke(main, ["call", str(files / "junk.wasm"), "echo"])
    assert result.exit_code == 1 and result.stderr.startswith("Error: ")


def test_call_by_name_in_an_app(runner: CliRunner, appdir: Path) -> None:
    (appdir / "plugins" / "conf.yaml").write_text("config: {where: sidecar}\n")
    args = ["call", "conf", "get", "--app", str(appdir)]
    assert runner.invoke(main, [*args, "--input", "who"]).stdout == "app\n"
    assert runner.invoke(main, [*args, "--input", "where"]).stdout == "sidecar\n"
    result = runner.invoke(main, [*args, "--input", "where", "--config", "where=flag"])
    assert result.stdout == "flag\n"
    # Found by its manifest name, not its file name.
    result = runner.invoke(main, ["call", "renamed", "echo", "--input", "x", "--app",
                                  str(appdir)])
    assert result.exit_code == 0 and result.stdout == "x\n"
    result = runner.invoke(main, ["call", "ghost", "echo", "--app", str(appdir)])
    assert result.exit_code == 1
    assert "no plugin 'ghost'" in result.stderr and "conf, other-file" in result.stderr


def test_call_reports_a_broken_sidecar(runner: CliRunner, appdir: Path) -> None:
    (appdir / "plugins" / "conf.toml").write_text("grnats = []\n")
    result = runner.invoke(main, ["call", "conf", "get", "--app", str(appdir)])
    assert result.exit_code == 1
    assert "unknown sidecar key 'grnats'" in result.stderr and "conf.toml" in result.stderr


def test_call_without_an_app_folder(runner: CliRunner, tmp_path: Path) -> None:
    result = runner.invoke(main, ["call", "x", "y", "--app", str(tmp_path / "none")])
    assert result.exit_code == 1 and "no omnicore.yaml" in result.stderr


def test_run_then_drop_a_plugin_then_call_it(tmp_path: Path) -> None:
    """The issue's 'done when': a real `omnicore run`, a dropped file, a real `omnicore call`."""
    app = tmp_path / "demo"
    # Any free port for the console: 8470 may be another host's.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMNICORE_CONSOLE__PORT": "0"}
    subprocess.run([str(OMNICORE), "new", str(app)], check=True, capture_output=True, env=env)
    assert (app / "plugins").is_dir()
    with Host(app).start(command=[str(OMNICORE)]) as server:
        server.logged("plugins:")
        write(app / "plugins", "dropped.wasm", echo_wasm("dropped", "4.2.0"))
        result = subprocess.run([str(OMNICORE), "call", "dropped", "version", "--app", str(app)],
                                capture_output=True, env=env, timeout=30)
        assert result.returncode == 0, result.stderr
        assert result.stdout == b"4.2.0\n"
        # The running server picked the file up too.
        server.logged("dropped")
        code = server.stop()
    assert code == 0, server.text


@pytest.fixture
def loggers(tmp_path: Path) -> Path:
    import wasmtime

    fixtures = Path(__file__).parents[1] / "fixtures"
    for name in ("echo", "wasi"):
        write(tmp_path, f"{name}.wasm",
              wasmtime.wat2wasm((fixtures / f"{name}.wat").read_text()))
    return tmp_path


def test_call_shows_the_plugins_warnings_on_stderr_and_everything_with_v(
        loggers: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    env = {"OMNICORE_CACHE_DIR": str(tmp_path / "cache")}
    quiet = runner.invoke(main, ["call", str(loggers / "wasi.wasm"), "hello"], env=env)
    assert quiet.exit_code == 0, quiet.output
    assert "[warn] oops on stderr" in quiet.stderr
    assert "hello from stdout" not in quiet.stderr and quiet.stdout == ""
    loud = runner.invoke(main, ["call", str(loggers / "wasi.wasm"), "hello", "-v"], env=env)
    assert "[info] hello from stdout" in loud.stderr and "[warn] oops on stderr" in loud.stderr
    info = runner.invoke(main, ["call", str(loggers / "echo.wasm"), "log", "--input", "hi!"],
                         env=env)
    assert info.exit_code == 0 and "hi!" not in info.stderr  # info is hidden by default
    info_v = runner.invoke(main, ["call", str(loggers / "echo.wasm"), "log", "--input", "hi!",
                                  "--verbose"], env=env)
    assert "[info] hi!" in info_v.stderr


@pytest.mark.parametrize("where", ["bare file", "app", "component"])
def test_a_one_off_call_compiles_with_the_baseline_compiler_unless_optimized_code_is_cached(
        loggers: Path, tmp_path: Path, where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """`omnicore call` ends with its call: a module the cache lacks is compiled by Winch (a
    Ruby plugin's first call: 3 s of CPU, not 27) and cached so; nothing tiers up. Cranelift's
    entry, once there (`omnicore run`, `precompile`), is what a call loads."""
    from omnicore.plugins.tiers import TierUp
    from omnicore.sandbox import PluginModule, SandboxEngine

    tiered: list[object] = []
    monkeypatch.setattr(TierUp, "submit", lambda self, entry, module: tiered.append(entry))
    cache = tmp_path / "cache"
    plugin = wat_component("limits") if where == "component" else loggers / "echo.wasm"
    given, answer = ("[1]", "2") if where == "component" else ("x", "x")
    if where == "app":
        app = tmp_path / "app"
        (app / "plugins").mkdir(parents=True)
        (app / "plugins" / "echo.wasm").write_bytes((loggers / "echo.wasm").read_bytes())
        (app / "omnicore.yaml").write_text(
            f"name: one-off\nplugins_dir: plugins\ndata_dir: {tmp_path / 'data'}\n"
            f"sandbox: {{cache_dir: {cache}}}\n")
        # The app's compiler is Cranelift (the default), not the tests' (tests/compiler.py).
        argv, env = ["call", "echo", "echo", "--app", str(app)], \
            {"OMNICORE_SANDBOX__COMPILER": "cranelift"}
    elif where == "component":  # a component's entries are named apart (their faces)
        argv, env = ["call", str(plugin), "small"], {"OMNICORE_CACHE_DIR": str(cache)}
    else:
        argv, env = ["call", str(plugin), "echo"], {"OMNICORE_CACHE_DIR": str(cache)}

    def entries() -> list[str]:
        return sorted(p.name.split(".")[0] + ".cwasm" for p in cache.glob("*.cwasm"))

    with SandboxEngine(baseline=True) as winch, SandboxEngine(cache_dir=cache) as cranelift:
        first = CliRunner().invoke(main, [*argv, "--input", given], env=env)
        assert first.exit_code == 0 and first.stdout.strip() == answer, first.output
        assert [e.split("-")[1] for e in entries()] == [f"{winch.config_key}.cwasm"]
        assert tiered == []
        # The optimized code compiled (what a serving host's tier-up writes) and the baseline
        # entry gone: a call now loads Cranelift's entry and compiles nothing.
        PluginModule.load(cranelift, plugin)
        for entry in cache.glob(f"*-{winch.config_key}.*"):
            entry.unlink()
        again = CliRunner().invoke(main, [*argv, "--input", given], env=env)
        assert again.exit_code == 0 and again.stdout.strip() == answer, again.output
        assert [e.split("-")[1] for e in entries()] == [f"{cranelift.config_key}.cwasm"]


def test_bare_file_calls_share_a_per_user_module_cache(loggers: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {"OMNICORE_CACHE_DIR": str(cache)}
    first = CliRunner().invoke(main, ["call", str(loggers / "echo.wasm"), "echo",
                                      "--input", "x"], env=env)
    assert first.exit_code == 0 and first.stdout == "x\n"
    entries = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert entries, "the compiled module was not cached"
    again = CliRunner().invoke(main, ["call", str(loggers / "echo.wasm"), "echo",
                                      "--input", "y"], env=env)
    assert again.stdout == "y\n"
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == entries  # reused
