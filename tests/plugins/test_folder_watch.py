"""The watched plugin folder with real files, a real watcher and real plugins."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from omnicore.core.events import Event
from omnicore.errors import GuestError, PluginError, PluginNotFound
from omnicore.plugins.events import PluginFailed, PluginReloaded
from omnicore.plugins.folder import PluginFolder
from omnicore.plugins.host import PluginHost
from tests.host_fixtures import config_wasm, echo_wasm, write
from tests.waiting import eventually


@pytest.fixture
def events() -> list[Event]:
    return []


@pytest.fixture
def host(events: list[Event]) -> Iterator[PluginHost]:
    with PluginHost(events=events.append) as h:
        yield h


def answers(host: PluginHost, name: str, version: str) -> Callable[[], bool]:
    def check() -> bool:
        try:
            return host.call(name, "version") == version.encode()
        except PluginError:  # not there yet, or still the broken version
            return False

    return check


def test_initial_load_with_a_broken_file_and_a_duplicate(host: PluginHost, tmp_path: Path,
                                                         events: list[Event]) -> None:
    write(tmp_path, "a.wasm", echo_wasm("alpha"))
    write(tmp_path, "b.wasm", echo_wasm("alpha"))  # the same manifest name: a duplicate
    write(tmp_path, "broken.wasm", b"\x00asm\x01\x00\x00\x00\x01\xff")
    write(tmp_path, "empty.wasm", b"")
    (tmp_path / "notes.txt").write_text("not a plugin")
    folder = host.watch_folder(tmp_path, watch=False)
    assert not folder.watching
    assert host.call("alpha", "echo", b"hi") == b"hi"
    assert host.get("alpha").source == str(tmp_path / "a.wasm")
    dup = host.get("b.wasm")
    assert dup.state == "failed" and dup.last_error is not None
    assert str(tmp_path / "a.wasm") in dup.last_error and str(tmp_path / "b.wasm") in dup.last_error
    assert host.get("broken").state == "failed" and host.get("empty").state == "failed"
    assert sorted(p.name for p in host) == ["alpha", "b.wasm", "broken", "empty"]
    assert {e.plugin for e in events if isinstance(e, PluginFailed)} == {"b.wasm", "broken",
                                                                         "empty"}


def test_new_file_becomes_callable(host: PluginHost, tmp_path: Path) -> None:
    # How fast is measured by bench/bench_host.py (tens of ms); tests are not timed.
    host.watch_folder(tmp_path)
    write(tmp_path, "fresh.wasm", echo_wasm("fresh", "1.0.0"))
    eventually(answers(host, "fresh", "1.0.0"), timeout=5.0)


def test_replace_while_calling_in_a_loop_never_fails(host: PluginHost, tmp_path: Path,
                                                     events: list[Event]) -> None:
    path = write(tmp_path, "echo.wasm", echo_wasm("echo", "1.0.0"))
    host.watch_folder(tmp_path)
    failures: list[BaseException] = []
    seen: set[bytes] = set()
    calls = 0
    stop = threading.Event()

    def caller(handler: str, data: bytes) -> None:
        nonlocal calls
        while not stop.is_set():
            try:
                seen.add(host.call("echo", handler, data))
                calls += 1
            except BaseException as exc:  # any failure at all breaks the promise
                failures.append(exc)

    # One thread makes quick calls; the other keeps a slow call in flight across the swap.
    threads = [threading.Thread(target=caller, args=("version", b"")),
               threading.Thread(target=caller, args=("slow", bytes([20])))]
    for t in threads:
        t.start()
    time.sleep(0.1)
    tmp = tmp_path / ".echo.wasm.tmp"
    tmp.write_bytes(echo_wasm("echo", "2.0.0"))
    os.replace(tmp, path)  # an atomic deploy
    eventually(lambda: b"2.0.0" in seen, timeout=5.0)
    write(tmp_path, "echo.wasm", echo_wasm("echo", "3.0.0"))  # an in-place rewrite
    eventually(lambda: b"3.0.0" in seen, timeout=5.0)
    time.sleep(0.1)
    stop.set()
    for t in threads:
        t.join()
    assert failures == []
    assert calls > 50
    assert seen >= {b"1.0.0", b"2.0.0", b"3.0.0"}
    assert host.call("echo", "version") == b"3.0.0"
    assert host.get("echo").version == "3.0.0"
    reloads = [e.version for e in events if isinstance(e, PluginReloaded)]
    assert reloads[-2:] == ["2.0.0", "3.0.0"]


def test_removed_file_unloads(host: PluginHost, tmp_path: Path) -> None:
    path = write(tmp_path, "gone.wasm", echo_wasm("gone"))
    host.watch_folder(tmp_path)
    assert "gone" in host
    path.unlink()
    eventually(lambda: "gone" not in host, timeout=5.0)
    with pytest.raises(PluginNotFound):
        host.call("gone", "echo", b"")


def test_broken_replacement_keeps_the_old_version_serving(host: PluginHost,
                                                          tmp_path: Path) -> None:
    path = write(tmp_path, "echo.wasm", echo_wasm("echo", "1.0.0"))
    host.watch_folder(tmp_path)
    path.write_bytes(b"\x00asm garbage")
    eventually(lambda: host.get("echo").last_error is not None, timeout=5.0)
    info = host.get("echo")
    assert info.state == "loaded" and "still serving the previous version" in info.last_error
    assert host.call("echo", "version") == b"1.0.0"
    write(tmp_path, "echo.wasm", echo_wasm("echo", "1.0.1"))
    eventually(answers(host, "echo", "1.0.1"), timeout=5.0)
    assert host.get("echo").last_error is None


def test_broken_file_then_fixed(host: PluginHost, tmp_path: Path) -> None:
    host.watch_folder(tmp_path)
    write(tmp_path, "late.wasm", b"not wasm at all")
    # Listed while its compile runs ("compiling"), then failed: the state once that is over
    # (a loaded machine once showed the first, and the test read it too soon).
    eventually(lambda: "late" in host and host.get("late").state != "compiling", timeout=5.0)
    assert host.get("late").state == "failed"
    write(tmp_path, "late.wasm", echo_wasm("late", "1.0.0"))
    eventually(answers(host, "late", "1.0.0"), timeout=5.0)


def test_sidecar_change_relinks_with_the_new_grant_and_config(host: PluginHost,
                                                              tmp_path: Path) -> None:
    write(tmp_path, "conf.wasm", config_wasm("conf"))
    host.watch_folder(tmp_path)
    assert host.get("conf").state == "needs-grant"
    (tmp_path / "conf.toml").write_text('grants = ["config"]\n[config]\ncolor = "blue"\n')
    eventually(lambda: host.get("conf").state == "loaded", timeout=5.0)
    assert host.call("conf", "get", b"color") == b"blue"
    (tmp_path / "conf.toml").write_text('grants = ["config"]\n[config]\ncolor = "red"\n')
    eventually(lambda: host.call("conf", "get", b"color") == b"red", timeout=5.0)
    (tmp_path / "conf.toml").write_text("grants = [\"config\"]\nbogus = 1\n")
    eventually(lambda: (host.get("conf").last_error or "").find("bogus") >= 0, timeout=5.0)
    assert host.call("conf", "get", b"color") == b"red"  # still the last good version


def test_a_grant_revoked_by_a_sidecar_of_the_same_size_and_time_is_revoked(
        host: PluginHost, tmp_path: Path) -> None:
    """A deploy that keeps files' times (`rsync -t`, `cp -p`, tar) puts a new sidecar in
    place by a rename, with the old one's size and mtime: the folder compared those alone,
    and the revoked grant kept being served."""
    write(tmp_path, "conf.wasm", config_wasm("conf"))
    side = tmp_path / "conf.toml"
    granted = 'grants = ["config"]\n[config]\ncolor = "blue"\n'
    revoked = 'grants = []\n[config]\ncolor = "blue"\n'
    revoked = revoked.replace("[]", "[]" + " " * (len(granted) - len(revoked)), 1)
    assert len(revoked) == len(granted)
    side.write_text(granted)
    host.watch_folder(tmp_path)
    eventually(lambda: host.get("conf").state == "loaded")
    assert host.call("conf", "get", b"color") == b"blue"
    before = side.stat()
    staged = tmp_path / ".conf.toml.new"  # a dot-file: the folder's scan passes it over
    staged.write_text(revoked)
    os.utime(staged, ns=(before.st_atime_ns, before.st_mtime_ns))
    os.replace(staged, side)
    after = side.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    eventually(lambda: host.get("conf").state == "needs-grant")
    with pytest.raises(PluginError):
        host.call("conf", "get", b"color")


def test_a_renamed_plugin_replaces_the_old_name(host: PluginHost, tmp_path: Path) -> None:
    path = write(tmp_path, "p.wasm", echo_wasm("first"))
    host.watch_folder(tmp_path)
    path.write_bytes(echo_wasm("second"))
    eventually(lambda: "second" in host and "first" not in host, timeout=5.0)


def test_folder_stop_stops_following(tmp_path: Path) -> None:
    with PluginHost() as host:
        folder = host.watch_folder(tmp_path)
        assert isinstance(folder, PluginFolder) and folder.watching
        folder.stop()
        assert not folder.watching
        write(tmp_path, "x.wasm", echo_wasm("x"))
        time.sleep(1.0)  # two safety-net rescans would have happened
        assert "x" not in host


def test_missing_folder_is_not_an_error(tmp_path: Path) -> None:
    with PluginHost() as host:
        folder = host.watch_folder(tmp_path / "absent")
        assert not folder.watching and len(host) == 0


def test_a_runtime_grant_survives_a_reload(host: PluginHost, tmp_path: Path) -> None:
    path = write(tmp_path, "conf.wasm", config_wasm("conf"))
    host.watch_folder(tmp_path)
    host.grant("conf", "config")
    log_before = host.logs("conf")
    with pytest.raises(GuestError, match="NOT_FOUND"):  # callable: the guest answered
        host.call("conf", "get", b"missing-key")
    (tmp_path / "conf.toml").write_text('[config]\ncolor = "green"\n')
    eventually(lambda: host.get("conf").config == {"color": "green"}, timeout=5.0)
    assert host.get("conf").state == "loaded"
    assert host.call("conf", "get", b"color") == b"green"
    assert host.logs("conf") is log_before  # one log across versions
    assert path.exists()


def test_a_broken_files_placeholder_gives_way_to_a_working_plugin(host: PluginHost,
                                                                  tmp_path: Path) -> None:
    broken = write(tmp_path, "greeter.wasm", b"junk")
    host.watch_folder(tmp_path)
    assert host.get("greeter").state == "failed"
    write(tmp_path, "greeter-v2.wasm", echo_wasm("greeter", "2.0.0"))
    eventually(answers(host, "greeter", "2.0.0"), timeout=5.0)
    assert host.get("greeter.wasm").state == "failed"
    assert host.get("greeter").source == str(tmp_path / "greeter-v2.wasm")
    broken.write_bytes(b"still junk")
    time.sleep(0.3)
    assert sorted(p.name for p in host) == ["greeter", "greeter.wasm"]
    broken.unlink()
    eventually(lambda: "greeter.wasm" not in host, timeout=5.0)
    assert host.call("greeter", "version") == b"2.0.0"


def test_without_file_events_the_folder_is_polled(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import watchfiles

    def no_events(*_args: object, **_kwargs: object) -> Iterator[set[object]]:
        raise OSError("inotify instance limit reached")

    monkeypatch.setattr(watchfiles, "watch", no_events)
    with PluginHost() as host:
        folder = host.watch_folder(tmp_path)
        write(tmp_path, "polled.wasm", echo_wasm("polled", "1.0.0"))
        eventually(answers(host, "polled", "1.0.0"))
        assert folder.watching and folder.mode == "polling"
