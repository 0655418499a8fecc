"""A CLI that reaches only its own host (issue 61, deliverable 5): an app folder copied from a
running app (the scale-out guide's ``cp -r build/demo host-a``, its ``console.json`` naming the
demo's URL and admin token) never sends a command to the original host; once the copy's own
host starts it gets an app id of its own and the CLI given the copy reaches that host."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicore.appid import APP_ID_FILE, app_id, ensure_app_id
from tests.host_fixtures import echo_wasm
from tests.hosts import Host


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "omnicore.cli", *args], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    started: list[Host] = []
    yield started
    for host in started:
        host.stop()


def test_the_id_belongs_to_the_folder_it_was_made_for(tmp_path: Path) -> None:
    data = tmp_path / "a" / "data"
    assert app_id(data) is None
    made = ensure_app_id(data)
    assert made.startswith("app-") and app_id(data) == made == ensure_app_id(data)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    copy = tmp_path / "b" / "data"
    assert (copy / APP_ID_FILE).is_file() and app_id(copy) is None  # a copy has none
    own = ensure_app_id(copy)
    assert own != made and app_id(copy) == own and app_id(data) == made


def test_a_copied_app_folder_never_reaches_the_original_host(
        tmp_path: Path, module_cache: Path, hosts: list[Host]) -> None:
    original = tmp_path / "demo"
    (original / "plugins").mkdir(parents=True)
    (original / "plugins" / "echo.wasm").write_bytes(echo_wasm("echo", "1.0.0"))
    (original / "omnicore.yaml").write_text(json.dumps({
        "name": "demo", "data_dir": ".omnicore", "plugins_dir": "plugins",
        "sandbox": {"cache_dir": str(module_cache)}}))
    demo = Host(original, data=original / ".omnicore").start()
    hosts.append(demo)
    remote = demo.remote()
    demo.until(demo.ready, "the demo ready")
    # The original folder reaches its host.
    ok = cli("call", "echo", "version", "--app", str(original))
    assert ok.returncode == 0 and f"running host at {remote.url}" in ok.stderr, ok.stderr
    # The guide's step, while the demo runs: its console.json (URL, token) comes along.
    copy = tmp_path / "host-a"
    shutil.copytree(original, copy)
    copied = json.loads((copy / ".omnicore" / "console.json").read_text())
    assert copied["url"] == remote.url
    changed = cli("settings", "disable", "echo", "--app", str(copy))
    assert changed.returncode == 0, changed.stderr
    assert f"not using the host at {remote.url}" in changed.stderr, changed.stderr
    assert "running without it" in changed.stderr
    called = cli("call", "echo", "version", "--app", str(copy))
    assert "not using the host" in called.stderr and "embedded" in called.stderr
    assert "is disabled" in called.stderr  # the copy's own setting: the write went there
    # The demo was not changed: it serves echo, enabled.
    still = cli("call", "echo", "version", "--app", str(original))
    assert still.returncode == 0 and still.stdout.strip() == "1.0.0", still.stderr
    assert "not using" not in still.stderr
    # The copy's own host starts: a new id, and the CLI given the copy reaches it, not the demo.
    host_a = Host(copy, data=copy / ".omnicore").start()
    hosts.append(host_a)
    mine = host_a.remote()
    assert mine.url != remote.url
    host_a.logged("gets an app id of its own")
    assert app_id(copy / ".omnicore") not in (None, app_id(original / ".omnicore"))
    through = cli("settings", "enable", "echo", "--app", str(copy))
    assert through.returncode == 0 and "not using" not in through.stderr, through.stderr
    host_a.until(lambda: cli("call", "echo", "version", "--app", str(copy)).stdout.strip()
                 == "1.0.0" or None, "the copy's host serving echo again")
    assert "running host" in cli("call", "echo", "version", "--app", str(original)).stderr
