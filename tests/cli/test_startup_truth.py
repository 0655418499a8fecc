"""``omnicore run``'s start-up tells the truth (issue 61, items 4 and 6): a stop asked for while
it starts is a clean stop (exit 0, not 143)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from omnicore.cli import main
from tests.hosts import Host


def _blocks(pid: int, sig: signal.Signals) -> bool:
    """Whether process ``pid``'s main thread blocks ``sig`` (its ``SigBlk`` mask)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(int(line.split()[1], 16) for line in status.splitlines()
                if line.startswith("SigBlk:"))
    return bool(mask & (1 << (sig - 1)))


@pytest.fixture
def appdir(tmp_path: Path) -> Path:
    folder = tmp_path / "demo"
    assert CliRunner().invoke(main, ["new", str(folder)]).exit_code == 0
    return folder


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_the_moment_run_begins_is_a_clean_stop(appdir: Path,
                                                              sig: signal.Signals) -> None:
    # The gate: the command's first act is to hold both signals; once its mask says so, the
    # signal comes during the imports and the start, long before the app's handlers exist.
    host = Host(appdir).start({"OMNICORE_SHUTDOWN_GRACE_S": "2"})
    assert host.proc is not None
    pid = host.proc.pid
    host.until(lambda: _blocks(pid, signal.SIGTERM) and _blocks(pid, signal.SIGINT),
               "omnicore run holding SIGINT and SIGTERM", every=0.001)
    host.proc.send_signal(sig)
    assert host.proc.wait(60) == 0, host.text
    assert f"received {sig.name}, stopping" in host.text
    assert "stopped" in host.text


def test_a_stop_signal_at_the_first_line_is_a_clean_stop(appdir: Path) -> None:
    host = Host(appdir).start({"OMNICORE_SHUTDOWN_GRACE_S": "2"})
    assert host.proc is not None
    host.until(lambda: host.text.strip() or None, "its first line", every=0.001)
    host.proc.send_signal(signal.SIGTERM)
    assert host.proc.wait(60) == 0, host.text
    assert "received SIGTERM, stopping" in host.text


def test_run_leaves_the_callers_signal_mask_as_it_found_it(tmp_path: Path) -> None:
    # In-process (an embedding app, the tests): a run that fails at once unblocks again.
    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    result = CliRunner().invoke(main, ["run", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert signal.pthread_sigmask(signal.SIG_BLOCK, set()) == before


def test_keygen_names_its_files_as_omnicore_yaml_must(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # A key path in omnicore.yaml is read from the app folder, not the shell's: the command
    # prints the absolute path, the one that works wherever the app folder is.
    (tmp_path / "keys").mkdir()
    monkeypatch.chdir(tmp_path / "keys")
    monkeypatch.delenv("OMNICORE_SIGNING_PASSWORD", raising=False)
    result = CliRunner().invoke(main, ["plugins", "keygen", "--out", "ops"])
    assert result.exit_code == 0, result.output
    public = (tmp_path / "keys" / "ops.pub").resolve()
    assert result.stdout == f"{public}\n"
    assert f"wrote {public.with_suffix('.key')} (keep it secret" in result.stderr
    assert f"keys: [{public}], require: true" in result.stderr
    assert "a relative path there is read from the app folder" in result.stderr
