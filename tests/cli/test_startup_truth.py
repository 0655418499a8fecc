"""``omnicore run``'s start-up tells the truth (issue 61, items 4 and 6).

- A host whose plugins, trust store or catalog cannot load refuses to start, with the reason
  and exit code 1: it used to log one ERROR, say it started, serve nothing, and answer
  ``/readyz`` with "plugins folder not read yet" for ever.
- A path a message suggests is the path that will be read.
- A stop asked for while it starts is a clean stop (exit 0, not 143).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from omnicore.app import OmniApp
from omnicore.cli import main
from omnicore.core.lifecycle import State
from omnicore.errors import ConfigError
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


# -- what cannot load refuses the start ------------------------------------------------------

def _refused(appdir: Path, edit: Callable[[str], str]) -> tuple[str, str]:
    """``omnicore run`` of ``appdir`` with its omnicore.yaml edited: (its last line, its log),
    once it has exited 1."""
    config = appdir / "omnicore.yaml"
    config.write_text(edit(config.read_text()))
    host = Host(appdir).start()
    assert host.proc is not None
    assert host.proc.wait(120) == 1, host.text
    return host.text.strip().splitlines()[-1], host.text


def _plugins(section: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert "\nplugins: {}\n" in text  # the scaffold's one plugins: section
        return text.replace("\nplugins: {}\n", f"\nplugins:\n  {section}\n")
    return edit


def test_a_trust_key_file_that_is_not_there_refuses_the_start(appdir: Path) -> None:
    last, log = _refused(appdir, _plugins("trust: {keys: [keys/ops.pub], require: true}"))
    # The path read: relative to the app folder, printed whole.
    key = appdir.resolve() / "keys" / "ops.pub"
    assert last == (f"Error: plugins.trust.keys: cannot read the key file {key} "
                    f"(No such file or directory)")
    assert "so the app does not start" in log
    assert "started (runtime id" not in log and "Traceback" not in log


def test_a_trust_key_that_does_not_load_refuses_the_start(appdir: Path) -> None:
    (appdir / "ops.pub").write_text("not a key\n")
    last, log = _refused(appdir, _plugins("trust: {keys: [ops.pub], require: true}"))
    assert last.startswith(f"Error: plugins.trust.keys: {appdir.resolve() / 'ops.pub'} is not a "
                           f"usable public key")
    assert "started (runtime id" not in log


def test_a_plugins_dir_that_is_not_a_folder_refuses_the_start(appdir: Path) -> None:
    (appdir / "wasm-here").write_text("a file\n")
    last, log = _refused(appdir, lambda text: text.replace("plugins_dir: plugins",
                                                            "plugins_dir: wasm-here"))
    assert last == (f"Error: plugins_dir {appdir.resolve() / 'wasm-here'} is a file, not a "
                    f"folder: set plugins_dir to the folder that holds the .wasm files")
    assert "started (runtime id" not in log


def test_a_catalog_source_that_is_no_reference_refuses_the_start(appdir: Path) -> None:
    last, log = _refused(appdir, lambda text: text + "catalog:\n  sources: [ghcr.io/x/y:1]\n")
    assert "catalog.sources: 'ghcr.io/x/y:1' is not an OCI reference" in last
    assert "omnicore.yaml:" in last  # and where it is written
    assert "runtime id" not in log  # refused before anything started


def test_a_config_error_of_any_extension_refuses_the_start_and_others_stop_again(
        make_app: Callable[..., OmniApp]) -> None:
    app = make_app()
    calls: list[str] = []

    class First:
        name = "first"

        def startup(self) -> None:
            calls.append("first startup")

        def shutdown(self) -> None:
            calls.append("first shutdown")

    class Misconfigured:
        name = "misconfigured"

        def startup(self) -> None:
            raise ConfigError("myext.url: not set", key="myext.url")

        def shutdown(self) -> None:
            calls.append("misconfigured shutdown")

    class Later:
        name = "later"

        def startup(self) -> None:
            calls.append("later startup")

    for ext in (First(), Misconfigured(), Later()):
        app.extensions.register(ext)
    with pytest.raises(ConfigError, match=r"myext\.url: not set"):
        app.start()
    assert app.state is State.FAILED
    assert calls == ["first startup", "misconfigured shutdown", "first shutdown"]
    assert app.extensions.failures["misconfigured"] == "startup: ConfigError: myext.url: not set"


def test_a_required_extensions_failure_refuses_the_start_and_another_does_not(
        make_app: Callable[..., OmniApp]) -> None:
    class Broken:
        def __init__(self, name: str) -> None:
            self.name = name

        def startup(self, app: Any) -> None:
            raise RuntimeError(f"{self.name} is broken")

    optional = make_app("optional")
    optional.extensions.register(Broken("optional-ext"))
    optional.start()  # an optional extension's bug is recorded; the app serves
    assert optional.state is State.RUNNING
    assert optional.extensions.failures["optional-ext"].startswith("startup: RuntimeError")
    optional.stop()
    essential = make_app("essential")
    essential.extensions.register(Broken("essential-ext"), required=True)
    with pytest.raises(RuntimeError, match="essential-ext is broken"):
        essential.start()
    assert essential.state is State.FAILED
