"""Winch's code cached until the Cranelift tier-up replaces it (plugins.tiers,
plugins.linking's ``_forget_baseline``), attacked: what a neighbour with the cache folder, a
full disk, or a second host on the same folder can do to the baseline entries.

The baseline entries are entries like any other (sandbox.modcache): authenticated with the
host's key over the wasm's digest and the engine's configuration, which names Winch, before
wasmtime sees a byte. A tier-up removes the whole entry (its code and its MAC) once
Cranelift's code is in the cache, never before: a start after any stop finds one of the two
whole, or neither.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.errors import DeadlineExceeded
from omnicore.plugins.ahead import CompileAhead
from omnicore.plugins.host import PluginHost
from omnicore.plugins.tiers import TierUp
from omnicore.sandbox import SandboxEngine, modcache
from omnicore.sandbox.pool import InstancePool
from tests.host_fixtures import echo_wasm, write
from tests.waiting import eventually

NAMES = ("tiny", "other")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    write(plugins, "tiny.wasm", echo_wasm("tiny", "1.0.0"))
    write(plugins, "other.wasm", echo_wasm("other", "2.0.0"))
    return plugins


@pytest.fixture
def keys(tmp_path: Path) -> tuple[str, str]:
    """The cache key suffixes of Cranelift's entries and Winch's, as the host names them."""
    # (Not the cache's folder: an engine made on it sweeps it, once per process.)
    with SandboxEngine(cache_dir=tmp_path / "keys") as main, \
            SandboxEngine(cache_dir=tmp_path / "keys", baseline=True) as winch:
        return main.config_key, winch.config_key


def _host(cache: Path) -> PluginHost:
    return PluginHost(engine_factory=lambda fuel=False: SandboxEngine(cache_dir=cache,
                                                                      fuel=fuel))


def _baseline(host: PluginHost, name: str) -> bool:
    return host._linker._tiers.is_baseline(host._entries.require(name).module)


def _sha(folder: Path, name: str) -> str:
    import hashlib

    return hashlib.sha256((folder / f"{name}.wasm").read_bytes()).hexdigest()


@pytest.fixture
def no_tier_up(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Hosts stopped before any tier-up (an agent's short session): Winch's entries stay."""
    submit = TierUp.submit
    monkeypatch.setattr(TierUp, "submit", lambda *_: None)
    yield
    monkeypatch.setattr(TierUp, "submit", submit)


def _start_baseline(folder: Path, cache: Path) -> None:
    with _host(cache) as first:
        first.watch_folder(folder, watch=False)
        assert all(_baseline(first, n) for n in NAMES)


def _serves_genuine(host: PluginHost) -> None:
    assert host.call("tiny", "version", b"") == b"1.0.0"
    assert host.call("other", "version", b"") == b"2.0.0"
    assert host.call("tiny", "echo", b"x") == b"x"


def test_a_tier_up_removes_the_baseline_entry_whole(folder: Path, tmp_path: Path,
                                                    keys: tuple[str, str]) -> None:
    """Its MAC too: the code went and its 48-byte MAC stayed, one more file in the cache for
    each module version that ever tiered up, for good (nothing else deletes a MAC whose entry
    is gone)."""
    cache = tmp_path / "cache"
    main_key, winch_key = keys
    with _host(cache) as host:
        host.watch_folder(folder, watch=False)
        eventually(lambda: not any(_baseline(host, n) for n in NAMES), "the tier-up")
        _serves_genuine(host)
    left = sorted(p.name for p in cache.iterdir())
    assert not [n for n in left if winch_key in n], left
    assert sorted(n for n in left if not n.startswith(".")) == sorted(
        f"{_sha(folder, n)}-{main_key}.cwasm{mac}" for n in NAMES for mac in ("", ".mac"))


def _swaps_timing_out(monkeypatch: pytest.MonkeyPatch, times: int) -> dict[str, int]:
    """Each plugin's first ``times`` swaps to its optimized code end as a new instance's
    warm-up past the plugin's deadline does on a stalled host (a loaded machine's): the
    first instance's start raises the deadline, under the real swap (the pool turns it into
    the runtime's PluginLoadError, as it did in a loaded CI run)."""
    tried: dict[str, int] = {}
    seed = InstancePool.seed

    def stalled(self: InstancePool[Any]) -> None:
        if threading.current_thread().name == "omnicore-tier-up":
            tried[self.name] = tried.get(self.name, 0) + 1
            if tried[self.name] <= times:
                raise DeadlineExceeded("call exceeded its 1000 ms deadline", plugin=self.name)
        seed(self)

    monkeypatch.setattr(InstancePool, "seed", stalled)
    return tried


def test_a_swap_that_timed_out_is_tried_once_more(folder: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A stall that outlasts the warm-up's deadline once does not leave a host on the
    baseline code for good (a loaded CI run's host did)."""
    tried = _swaps_timing_out(monkeypatch, 1)
    with _host(tmp_path / "cache") as host:
        host.watch_folder(folder, watch=False)
        eventually(lambda: not any(_baseline(host, n) for n in NAMES), "the tier-up")
        _serves_genuine(host)
    assert tried == {n: 2 for n in NAMES}


def test_a_swap_that_timed_out_twice_leaves_the_baseline_serving(
        folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once more, not for ever: the plugin goes on serving its baseline code."""
    tried = _swaps_timing_out(monkeypatch, 5)
    with _host(tmp_path / "cache") as host:
        host.watch_folder(folder, watch=False)
        eventually(lambda: tried == {n: 2 for n in NAMES}, "both tries")
        host._linker._tiers.close()
        assert all(_baseline(host, n) for n in NAMES)
        _serves_genuine(host)


def test_a_tier_up_whose_code_could_not_be_cached_keeps_the_baseline_entry(
        folder: Path, tmp_path: Path, keys: tuple[str, str]) -> None:
    """A full disk, a quota, a name taken: Cranelift's code serves this host but was not
    stored, so Winch's entry is the only code the next start can load. It stays (it was
    deleted, and every later start compiled Winch again, then failed to store again). Here
    the Cranelift entry's name is held by a directory, which a store cannot replace."""
    cache = tmp_path / "cache"
    main_key, winch_key = keys
    cache.mkdir(mode=0o700)
    blocked = cache / f"{_sha(folder, 'tiny')}-{main_key}.cwasm"
    blocked.mkdir()
    (blocked / "x").write_bytes(b"")
    with _host(cache) as host:
        host.watch_folder(folder, watch=False)
        eventually(lambda: not any(_baseline(host, n) for n in NAMES), "the tier-up")
        _serves_genuine(host)
    winch = cache / f"{_sha(folder, 'tiny')}-{winch_key}.cwasm"
    assert winch.is_file() and Path(f"{winch}.mac").is_file()
    inode = winch.stat().st_ino
    # The next start loads it (a compile writes the entry anew: another inode).
    gate = threading.Event()
    with _host(cache) as host, pytest.MonkeyPatch.context() as patch:
        patch.setattr(CompileAhead, "wait_idle", lambda self: gate.wait(120))
        try:
            host.watch_folder(folder, watch=False)
            assert _baseline(host, "tiny") and not _baseline(host, "other")
            assert winch.stat().st_ino == inode
            _serves_genuine(host)
        finally:
            gate.set()
    # The other module's entries are what any tier-up leaves.
    assert not (cache / f"{_sha(folder, 'other')}-{winch_key}.cwasm").exists()


@pytest.mark.usefixtures("no_tier_up")
def test_a_baseline_entry_renamed_to_the_optimized_name_is_refused(
        folder: Path, tmp_path: Path, keys: tuple[str, str], monkeypatch: pytest.MonkeyPatch
        ) -> None:
    """Winch's genuine code and MAC for the same wasm, under Cranelift's name: the MAC covers
    the engine's configuration, which names Winch, so it is refused and Cranelift compiles."""
    cache = tmp_path / "cache"
    main_key, winch_key = keys
    _start_baseline(folder, cache)
    sha = _sha(folder, "tiny")
    for suffix in (".cwasm", ".cwasm.mac"):
        os.replace(cache / f"{sha}-{winch_key}{suffix}", cache / f"{sha}-{main_key}{suffix}")
    before = modcache.rejected()
    with _host(cache) as host:
        host.watch_folder(folder, watch=False)
        assert not _baseline(host, "tiny")
        assert modcache.rejected() == before + 1
        _serves_genuine(host)
    # What the refusal stored in its place is genuine Cranelift code: read without refusal.
    with _host(cache) as host:
        host.watch_folder(folder, watch=False)
        assert not _baseline(host, "tiny") and modcache.rejected() == before + 1


def _swap_whole(cache: Path, src: str, dst: str) -> None:
    for suffix in ("", ".mac"):
        shutil.copyfile(cache / f"{src}{suffix}", cache / f"{dst}{suffix}")


def _link(cache: Path, src: str, dst: str) -> None:
    for suffix in ("", ".mac"):
        (cache / f"{dst}{suffix}").unlink()
        (cache / f"{dst}{suffix}").symlink_to(cache / f"{src}{suffix}")


def _truncate(cache: Path, src: str, dst: str) -> None:
    path = cache / dst
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _link_folder(cache: Path, src: str, dst: str) -> None:
    # The whole entry through a link to a folder of the neighbour's: not followed either.
    elsewhere = cache.parent / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    for suffix in ("", ".mac"):
        shutil.copyfile(cache / f"{src}{suffix}", elsewhere / f"{dst}{suffix}")
        (cache / f"{dst}{suffix}").unlink()
        (cache / f"{dst}{suffix}").symlink_to(elsewhere / f"{dst}{suffix}")


@pytest.mark.usefixtures("no_tier_up")
@pytest.mark.parametrize("attack", [_swap_whole, _link, _truncate, _link_folder],
                         ids=["another-modules-entry", "link", "truncated", "link-elsewhere"])
def test_a_baseline_entry_tampered_with_serves_the_genuine_plugin(
        folder: Path, tmp_path: Path, keys: tuple[str, str], attack: object) -> None:
    """``other``'s Winch entry replaced by ``tiny``'s (code and MAC, both genuine), by links
    to it, cut in half: refused, compiled again, and ``other`` answers as itself."""
    cache = tmp_path / "cache"
    _, winch_key = keys
    _start_baseline(folder, cache)
    src = f"{_sha(folder, 'tiny')}-{winch_key}.cwasm"
    dst = f"{_sha(folder, 'other')}-{winch_key}.cwasm"
    attack(cache, src, dst)  # type: ignore[operator]
    before = modcache.rejected()
    with _host(cache) as host:
        host.watch_folder(folder, watch=False)
        assert modcache.rejected() == before + 1
        assert _baseline(host, "other")  # compiled again by Winch, and serving
        _serves_genuine(host)
    assert not (cache / dst).is_symlink() and (cache / dst).is_file()


@pytest.mark.usefixtures("no_tier_up")
def test_two_hosts_tiering_up_on_one_cache_at_once(folder: Path, tmp_path: Path,
                                                   keys: tuple[str, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Both start on Winch's entries, then tier up together (their Cranelift compiles and
    deletions race): both serve Cranelift's code, and the cache holds its entries whole and
    nothing else: no baseline part, no temp file, no lock."""
    cache = tmp_path / "cache"
    main_key, _ = keys
    _start_baseline(folder, cache)
    monkeypatch.undo()  # tier-ups on
    go = threading.Event()
    monkeypatch.setattr(CompileAhead, "wait_idle", lambda self: go.wait(120))
    try:
        with _host(cache) as a, _host(cache) as b:
            a.watch_folder(folder, watch=False)
            b.watch_folder(folder, watch=False)
            assert all(_baseline(h, n) for h in (a, b) for n in NAMES)
            go.set()
            eventually(lambda: not any(_baseline(h, n) for h in (a, b) for n in NAMES),
                       "both tier-ups")
            _serves_genuine(a)
            _serves_genuine(b)
    finally:
        go.set()
    assert sorted(p.name for p in cache.iterdir()) == sorted(
        f"{_sha(folder, n)}-{main_key}.cwasm{mac}" for n in NAMES for mac in ("", ".mac"))


#: A host whose tier-up stops for good in the fsync of Cranelift's entry (its MAC stored, the
#: entry's bytes in a temp file of the cache), once the test has opened the named pipe argv[1]:
#: the test then kills it there, as an agent's SIGKILL (or the OOM killer) would.
_KILLED_MID_STORE = """
import os, sys, threading
from pathlib import Path

fifo, folder, cache = sys.argv[1:4]
real = os.fsync


def fsync(fd):
    if threading.current_thread().name == "omnicore-tier-up" \\
            and os.readlink(f"/proc/self/fd/{fd}").endswith(".cwasm"):
        with open(fifo, "wb"):
            pass
        threading.Event().wait()
    return real(fd)


os.fsync = fsync
from omnicore.plugins.host import PluginHost
from omnicore.sandbox import SandboxEngine

host = PluginHost(engine_factory=lambda fuel=False: SandboxEngine(cache_dir=Path(cache),
                                                                  fuel=fuel))
host.watch_folder(Path(folder), watch=False)
threading.Event().wait()
"""


def test_a_host_killed_inside_its_tier_ups_store_leaves_a_cache_the_next_start_uses(
        tmp_path: Path, keys: tuple[str, str]) -> None:
    """Killed between the MAC's rename and the entry's: the next start finds no Cranelift
    entry (a plain miss, nothing refused), loads Winch's, tiers up. The temp file the kill
    left is removed by a start once it is stale (an hour: a host writing it now is never
    robbed of it); it stayed for good, an entry's size each (80 MB for a Python component)."""
    import signal
    import subprocess
    import sys

    folder = tmp_path / "plugins"
    folder.mkdir()
    write(folder, "tiny.wasm", echo_wasm("tiny", "1.0.0"))
    write(folder, "other.wasm", echo_wasm("other", "2.0.0"))  # (one file alone: no tiers)
    cache = tmp_path / "cache"
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", _KILLED_MID_STORE, str(fifo), str(folder),
                             str(cache)], cwd=root, env={**os.environ, "PYTHONPATH": str(root)})
    try:
        with open(fifo, "rb") as gate:
            gate.read()  # the writer closed it: the tier-up is inside the entry's fsync
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    main_key, winch_key = keys
    temps = sorted(cache.glob(".tmp-*"))
    assert len(temps) == 1 and temps[0].suffix == ".cwasm", sorted(cache.iterdir())
    # The first module of its tier-up (whichever): its MAC stored, its entry not.
    sha = next(_sha(folder, n) for n in NAMES
               if (cache / f"{_sha(folder, n)}-{main_key}.cwasm.mac").is_file())
    assert not (cache / f"{sha}-{main_key}.cwasm").exists()
    assert all((cache / f"{_sha(folder, n)}-{winch_key}.cwasm").is_file() for n in NAMES)

    # An hour later; and another host's temp file being written now.
    old = time.time() - 2 * 3600
    os.utime(temps[0], (old, old))
    fresh = cache / ".tmp-another-host-writing.cwasm"
    fresh.write_bytes(b"half of an entry")
    before = modcache.rejected()
    with _host(cache) as host:
        host.watch_folder(folder, watch=False)
        assert all(_baseline(host, n) for n in NAMES)  # Winch's entries, loaded
        eventually(lambda: not any(_baseline(host, n) for n in NAMES), "the tier-up")
        _serves_genuine(host)
    assert modcache.rejected() == before
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == sorted(
        f"{_sha(folder, n)}-{main_key}.cwasm{mac}" for n in NAMES for mac in ("", ".mac"))
    assert not temps[0].exists() and fresh.is_file()


@pytest.mark.parametrize("replace", ["removed", "a-file", "a-link-elsewhere"])
def test_the_cache_folder_swapped_out_before_the_tier_up(
        folder: Path, tmp_path: Path, keys: tuple[str, str], replace: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole folder removed, replaced by a file, or by a link to a folder of someone
    else's while the host serves Winch's code: the tier-up neither crashes the host nor stops
    it serving; what it can store goes where the link points only if that folder is trusted
    (here it is not: nothing is written there)."""
    cache = tmp_path / "cache"
    main_key, _ = keys
    go = threading.Event()
    monkeypatch.setattr(CompileAhead, "wait_idle", lambda self: go.wait(120))
    elsewhere = tmp_path / "elsewhere"
    try:
        with _host(cache) as host:
            host.watch_folder(folder, watch=False)
            assert all(_baseline(host, n) for n in NAMES)
            shutil.rmtree(cache)
            if replace == "a-file":
                cache.write_bytes(b"not a folder")
            elif replace == "a-link-elsewhere":
                elsewhere.mkdir(mode=0o777)
                elsewhere.chmod(0o777)  # anyone may write it: not a cache this host trusts
                cache.symlink_to(elsewhere)
            go.set()
            eventually(lambda: not any(_baseline(host, n) for n in NAMES), "the tier-up")
            _serves_genuine(host)
    finally:
        go.set()
    if replace == "removed":  # made again, holding the optimized entries whole
        assert sorted(p.name for p in cache.iterdir() if not p.name.startswith(".")) == sorted(
            f"{_sha(folder, n)}-{main_key}.cwasm{mac}" for n in NAMES for mac in ("", ".mac"))
    elif replace == "a-file":
        assert cache.read_bytes() == b"not a folder"
    else:
        assert list(elsewhere.iterdir()) == []
