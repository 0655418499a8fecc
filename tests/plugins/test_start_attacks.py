"""A start's background load of the folder (PluginHost.watch_folder(background=True),
plugins.arrivals) cut short: another folder watched while the first one's start is held at a
plugin's compile. Its files not loaded yet showed ``compiling`` (the start's placeholders)
for good: a call to one waited ``sandbox.load_wait_ms`` each time and failed with
PluginCompiling, ``/readyz?plugins=loaded`` never answered 200, an MCP call of its tools
waited as for a plugin on its way. They are dropped when the load stops: no such plugin.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from omnicore.errors import PluginNotFound
from omnicore.plugins.host import PluginHost
from omnicore.sandbox import SandboxEngine
from tests.host_fixtures import echo_wasm, write
from tests.test_loading_after_start import _Held, _padded
from tests.waiting import eventually


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    import omnicore.plugins.linking as linking

    monkeypatch.setattr(linking, "PluginModule", _Held)
    _Held.gate.clear()
    yield
    _Held.gate.set()


@pytest.mark.usefixtures("held")
def test_a_start_cut_short_by_another_folder_leaves_no_plugin_compiling_for_good(
        tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    tiny = write(first, "tiny.wasm", echo_wasm("tiny"))
    write(first, "big.wasm", _padded(echo_wasm("big"), tiny.stat().st_size))  # held
    write(first, "later.wasm", _padded(echo_wasm("later"), tiny.stat().st_size * 4))
    write(second, "other.wasm", echo_wasm("other"))
    with PluginHost(engine_factory=lambda fuel=False: SandboxEngine(
            cache_dir=tmp_path / "cache", fuel=fuel)) as host:
        old = host.watch_folder(first, watch=False, background=True)
        eventually(lambda: host.get("tiny").state == "loaded", "tiny loaded")
        assert host.get("big").state == "compiling" and host.get("later").state == "compiling"
        # The switch stops the first folder's load, and waits for the file in hand (big).
        switch = threading.Thread(target=host.watch_folder, args=(second,),
                                  kwargs={"watch": False, "background": True})
        switch.start()
        eventually(lambda: old._stop.is_set(), "the first load asked to stop")
        _Held.gate.set()
        switch.join(120)
        assert not switch.is_alive()
        assert host.wait_loaded(60)
        states = {i.name: i.state for i in host}
        # What loaded stays (the old folder's plugins stay loaded); none shows compiling.
        assert "compiling" not in states.values(), states
        assert states == {"tiny": "loaded", "big": "loaded", "other": "loaded"}, states
        host.load_wait_s = 60  # a call of the dropped one answers at once, not after this
        with pytest.raises(PluginNotFound):
            host.call("later", "echo", b"x")
        assert host.call("other", "echo", b"x") == b"x"


@pytest.mark.usefixtures("held")
def test_a_start_stopped_by_the_hosts_close_is_not_judged_as_a_whole_load(
        tmp_path: Path) -> None:
    """``omnicore mcp`` closes its app when the client left and the start outlasted its wait;
    its ``loaded`` callback checks mcp.expose against the plugins. A stopped load is not all
    of them: with its unloaded files' placeholders gone, a pattern naming one read as a
    typo ('names no plugin of the app'), and the command failed with it. The callback is
    not called for a stopped load."""
    from omnicore.errors import ConfigError
    from omnicore.plugins.expose import check_expose

    folder = tmp_path / "plugins"
    folder.mkdir()
    tiny = write(folder, "tiny.wasm", echo_wasm("tiny"))
    write(folder, "big.wasm", _padded(echo_wasm("big"), tiny.stat().st_size))  # held
    write(folder, "later.wasm", _padded(echo_wasm("later"), tiny.stat().st_size * 4))
    refused: list[ConfigError] = []

    def loaded(_folder: object) -> None:
        try:
            check_expose(["tiny/echo", "big/echo", "later/echo"], "test", list(host))
        except ConfigError as exc:
            refused.append(exc)

    host = PluginHost(engine_factory=lambda fuel=False: SandboxEngine(
        cache_dir=tmp_path / "cache", fuel=fuel))
    try:
        watched = host.watch_folder(folder, watch=False, background=True, loaded=loaded)
        eventually(lambda: host.get("tiny").state == "loaded", "tiny loaded")
        closing = threading.Thread(target=host.close)
        closing.start()
        eventually(lambda: watched._stop.is_set(), "the load asked to stop")
        _Held.gate.set()
        closing.join(120)
        assert not closing.is_alive()
    finally:
        _Held.gate.set()
        host.close()
    assert not refused, refused


def test_two_files_whose_manifests_name_each_other_both_load_and_nothing_fails(
        tmp_path: Path) -> None:
    # A start shows each file as compiling under its stem: a.wasm as 'a', b.wasm as 'b'. But
    # a.wasm holds plugin 'b': loading it took b.wasm's placeholder for a broken file's and
    # registered a failure for b.wasm ("failed to load"), which stayed beside plugin 'a'
    # once b.wasm loaded under its own name. The placeholder now goes on compiling under its
    # file name until its file loads.
    folder = tmp_path / "plugins"
    folder.mkdir()
    write(folder, "a.wasm", echo_wasm("b", "from-a"))
    write(folder, "b.wasm", echo_wasm("a", "from-b"))
    with PluginHost(engine_factory=lambda fuel=False: SandboxEngine(
            cache_dir=tmp_path / "cache", fuel=fuel)) as host:
        host.watch_folder(folder, watch=False, background=True)
        assert host.wait_loaded(60)
        states = {i.name: i.state for i in host}
        assert states == {"a": "loaded", "b": "loaded"}, states
        assert host.call("b", "version", b"") == b"from-a"
        assert host.call("a", "version", b"") == b"from-b"
