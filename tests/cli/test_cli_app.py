from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from omnicore.cli import main, new
from tests.hosts import Host


def invoke(*args: str, **kw: object) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False, **kw)  # type: ignore[arg-type]
    return r.exit_code, r.stdout, r.stderr


def test_help_everywhere() -> None:
    for args in ([], ["new"], ["new", "app"], ["run"], ["config"], ["config", "show"], ["info"]):
        code, out, _ = invoke(*args, "--help")
        assert code == 0 and "Usage:" in out, args


def test_new_scaffolds_an_app(tmp_path: Path) -> None:
    appdir = tmp_path / "demo"
    code, out, _ = invoke("new", str(appdir))
    assert code == 0 and "created" in out
    assert (appdir / "omnicore.yaml").is_file()
    assert (appdir / "plugins").is_dir()
    assert (appdir / "README.md").read_text().startswith("# demo")
    assert (appdir / ".gitignore").read_text() == ".omnicore/\n"
    assert "name: demo" in (appdir / "omnicore.yaml").read_text()
    code, out, _ = invoke("new", "app", str(tmp_path / "second"), "--name", "svc")
    assert code == 0 and "name: svc" in (tmp_path / "second" / "omnicore.yaml").read_text()


def test_new_refuses_non_empty_dir(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep").write_text("mine")
    code, _, err = invoke("new", str(tmp_path / "x"))
    assert code == 1
    assert err.strip().splitlines() == [
        f"Error: {tmp_path / 'x'} already exists and is not an empty folder; choose a new path"]
    assert (tmp_path / "x" / "keep").read_text() == "mine"


def test_contributed_commands_are_wired() -> None:
    for args in (["build"], ["new", "plugin"], ["inspect"], ["call"]):
        code, out, _ = invoke(*args, "--help")
        assert code == 0 and "Usage:" in out, args
    code, out, _ = invoke("new", "plugin", "--help")
    assert "--lang" in out


def test_new_is_a_group_others_can_extend(tmp_path: Path) -> None:
    @new.command("thing-for-test")
    @click.argument("name")
    def _thing(name: str) -> None:
        click.echo(f"thing {name}")

    try:
        code, out, _ = invoke("new", "thing-for-test", "zz")
        assert (code, out) == (0, "thing zz\n")
    finally:
        new.commands.pop("thing-for-test")


def test_scaffolded_config_is_valid_and_shown_with_sources(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMNICORE_CONSOLE__PORT")  # show the scaffold's own console port
    monkeypatch.delenv("OMNICORE_SANDBOX__LIMITS__TIMEOUT_MS")  # and the product's deadline
    invoke("new", str(tmp_path / "demo"))
    code, out, _ = invoke("config", "show", str(tmp_path / "demo"),
                          env={"OMNICORE_SANDBOX__LIMITS__TIMEOUT_MS": "9100"})
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()}
    row = lines["sandbox.limits.timeout_ms"]
    assert "9100" in row and "env OMNICORE_SANDBOX__LIMITS__TIMEOUT_MS" in row
    assert "8470" in lines["console.port"] and "127.0.0.1" in lines["console.host"]
    assert "omnicore.yaml:" in lines["name"]
    code, out, _ = invoke("config", "show", str(tmp_path / "demo"), "--json")
    doc = json.loads(out)
    assert doc["sandbox.limits.timeout_ms"]["value"] == "1000"


def test_config_error_is_one_line_and_debug_shows_traceback(tmp_path: Path) -> None:
    (tmp_path / "omnicore.yaml").write_text("sandbx:\n  pooling: true\n")
    code, out, err = invoke("config", "show", str(tmp_path))
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "unknown config key 'sandbx'" in err and "did you mean 'sandbox'" in err
    with pytest.raises(Exception, match="unknown config key"):
        CliRunner().invoke(main, ["--debug", "config", "show", str(tmp_path)],
                           catch_exceptions=False)


def test_run_without_config_is_a_clear_error(tmp_path: Path) -> None:
    code, _, err = invoke("run", str(tmp_path / "nowhere"))
    assert code == 1 and "no omnicore.yaml in" in err and "omnicore new" in err


def test_info(tmp_path: Path) -> None:
    code, out, _ = invoke("info")
    assert code == 0 and "environment" in out and "wasmtime 50.0.1" in out
    code, out, _ = invoke("info", "--json")
    doc = json.loads(out)
    assert doc["runtime_id"].startswith("rt-") and doc["environment"] in (
        "local", "container", "kubernetes", "cloud")


def test_version() -> None:
    code, out, _ = invoke("--version")
    assert code == 0 and "0.1.0" in out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_until_signal_exits_zero_with_runtime_id(tmp_path: Path,
                                                     sig: signal.Signals) -> None:
    appdir = tmp_path / "demo"
    invoke("new", str(appdir))
    # Keep the test independent of what the sandbox does with the (empty) plugins folder.
    # `cd demo && omnicore run` for one signal, `omnicore run demo` for the other.
    with Host(appdir).start({"OMNICORE_LOG__FORMAT": "json",
                             "OMNICORE_SHUTDOWN_GRACE_S": "2"}, here=sig is signal.SIGINT) as host:
        before = host.logged("started")
        lines = [json.loads(line) for line in before.splitlines() if line.startswith("{")]
        assert any("started" in rec["msg"] for rec in lines), lines
        runtime_id = lines[0]["runtime_id"]
        assert runtime_id.startswith("rt-") and runtime_id in lines[0]["msg"]
        t0 = time.monotonic()
        code = host.stop(sig)
        elapsed = time.monotonic() - t0
    rest = host.text[len(before):]
    assert code == 0, rest
    assert elapsed < 2 + 1
    tail = [json.loads(line) for line in rest.splitlines() if line.startswith("{")]
    assert any(f"received {sig.name}" in rec["msg"] for rec in tail), rest
    assert any("stopped" in rec["msg"] and rec["runtime_id"] == runtime_id for rec in tail)
    assert (appdir / ".omnicore").is_dir()
