"""Ready means serving (issue 63, item 5): a host starts serving before its plugins have
loaded; they load after the start, in the background and in order, ``/readyz`` answers at
once and names them under ``compiling``, and a call to one still loading waits for it
(``plugins.arrivals``, the one place every call path waits), bounded by its deadline: a
plugin that loads answers, one whose load fails answers its load error, one still loading
past the deadline answers ``PluginCompiling``.

A plugin's compile is held open by a gate (an Event the test opens), not by its size: how
long a compile takes depends on the machine.
"""

from __future__ import annotations

import ast
import asyncio
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from omnicore import OmniApp
from omnicore.console import ConsoleModule
from omnicore.errors import PluginCompiling, PluginLoadError, PluginNotFound
from omnicore.sandbox import PluginModule, SandboxEngine
from tests.host_fixtures import echo_wasm, write
from tests.hosts import CHEAP_PASSWORD_HASH
from tests.waiting import eventually

HOST = Path(__file__).resolve().parents[1] / "host" / "omnicore"


def _padded(wasm: bytes, size: int) -> bytes:
    """``wasm`` with a custom section that makes it ``size`` bytes or more: the folder
    loads its files smallest first, and the tests need that order."""
    payload = b"\x03pad" + b"\x00" * size
    n, leb = len(payload), b""
    while True:
        byte, n = n & 0x7F, n >> 7
        leb += bytes([byte | (0x80 if n else 0)])
        if not n:
            break
    return wasm + b"\x00" + leb + payload


class _Held(PluginModule):
    """PluginModule whose ``big.wasm`` waits at :attr:`gate` before it compiles."""

    gate = threading.Event()

    @classmethod
    def load(cls, engine: SandboxEngine, source: Any, name: str | None = None,
             **kw: Any) -> PluginModule:
        if isinstance(source, (str, Path)) and Path(source).name == "big.wasm":
            assert cls.gate.wait(120), "the test never opened the gate"
        return PluginModule.load(engine, source, name, **kw)


def _route(path: str, **more: Any) -> dict[str, Any]:
    return {"plugin": "big", "handler": "echo", "path": path, "methods": ["POST"],
            "auth": "public", "mode": "body", **more}


@dataclass
class Started:
    app: OmniApp
    url: str
    token: str

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60,
                            headers={"Authorization": f"Bearer {self.token}"})

    def invoke(self, plugin: str, text: str = "hi") -> httpx.Response:
        with self.client() as c:
            return c.post(f"/api/v1/plugins/{plugin}/invoke",
                          json={"handler": "echo", "input": text})


@pytest.fixture
def started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Started]:
    """A host started on tiny.wasm, big.wasm (held at the gate) and broken.wasm, loaded in
    that order (smallest first): it serves while big still compiles."""
    import omnicore.plugins.linking as linking

    monkeypatch.setattr(linking, "PluginModule", _Held)
    _Held.gate.clear()
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    tiny = write(plugins, "tiny.wasm", echo_wasm("tiny"))
    big = write(plugins, "big.wasm", _padded(echo_wasm("big"), tiny.stat().st_size))
    write(plugins, "broken.wasm", b"\x00asm\x01\x00\x00\x00\x05\xff\xff"
          + b"\x00" * big.stat().st_size)
    app = OmniApp("loading", overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(plugins),
        "console": {"port": 0, "password_hash": CHEAP_PASSWORD_HASH},
        "serve": {"routes": {
            "big": _route("/big"),
            # A deadline shorter than the load: the route's 504.
            "hurried": _route("/hurried", timeout_ms=200)}}})
    with serving_held(app) as (url, token):
        # The host serves with the gate shut: its services started (before this change
        # they waited for every plugin, and this wait ran out); app.start() itself returns
        # once the plugins have loaded, as an embedding app expects.
        assert app.state.value == "starting"
        yield Started(app, url, token)


@contextmanager
def serving_held(app: OmniApp) -> Iterator[tuple[str, str]]:
    """``app`` with a console, started on a thread of its own, once it serves (while what
    ``_Held.gate`` holds still compiles): its console's URL and an admin's API token. On the
    way out the gate opens and the app stops."""
    module = ConsoleModule()
    app.add_module(module)
    starting = threading.Thread(target=app.start)
    starting.start()
    try:
        eventually(lambda: app.serving, "the host serving while big compiles", timeout=60)
        assert module.console is not None and module.url is not None
        store = module.console.auth.store
        store.add("admin", "correct horse battery", "admin")
        token, _ = store.new_token("admin", "tests")
        yield module.url, token
    finally:
        _Held.gate.set()
        starting.join(120)
        if app.state.value == "running":
            app.stop()


def test_the_host_answers_at_once_and_readyz_names_what_still_loads(started: Started) -> None:
    app = started.app
    assert httpx.get(f"{started.url}/healthz", timeout=30).status_code == 200
    r = httpx.get(f"{started.url}/readyz", timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"ready": True, "reasons": [], "compiling": ["big", "broken"]}
    # A probe that wants every plugin loaded (a rolling upgrade's) asks for it.
    r = httpx.get(f"{started.url}/readyz?plugins=loaded", timeout=30)
    assert r.status_code == 503, r.text
    assert r.json()["reasons"] == ["plugins still loading: big, broken"]
    # Other plugins answer meanwhile.
    eventually(lambda: app.plugins.get("tiny").state == "loaded", "tiny loaded")
    assert started.invoke("tiny").json()["output"] == "hi"
    assert app.plugins.get("big").state == "compiling"  # the answer did not wait for it
    _Held.gate.set()
    eventually(lambda: not app.plugins.loading, "every plugin loaded")
    r = httpx.get(f"{started.url}/readyz?plugins=loaded", timeout=30)
    assert r.status_code == 200 and r.json() == {"ready": True, "reasons": []}, r.text


def test_a_call_to_a_plugin_still_loading_waits_and_answers_once_it_loads(
        started: Started) -> None:
    app = started.app
    answers: dict[str, Any] = {}

    def rest() -> None:
        answers["rest"] = started.invoke("big", "by rest")

    def embedded() -> None:
        answers["embedded"] = app.plugins.call("big", "echo", b"embedded")

    def failed() -> None:  # broken loads after big, and its load fails
        answers["broken"] = started.invoke("broken")

    def route() -> None:
        with httpx.Client(base_url=started.url, timeout=60) as c:
            answers["route"] = c.post("/http/big", content=b"by a route")

    def unknown() -> None:  # no file holds it: known once the folder's load is over
        try:
            app.plugins.call("nope", "echo", b"")
        except PluginNotFound as exc:
            answers["nope"] = exc

    callers = [threading.Thread(target=f) for f in (rest, embedded, failed, route, unknown)]
    for caller in callers:
        caller.start()
    job = app.jobs.enqueue("big", "echo", b"by a job")
    # All five wait for big, none has an answer: then the gate opens.
    eventually(lambda: app.plugins.waiting == 5, "five calls waiting")
    assert not answers
    assert app.plugins.get("tiny").state == "loaded"
    assert started.invoke("tiny", "meanwhile").json()["output"] == "meanwhile"
    _Held.gate.set()
    for caller in callers:
        caller.join(60)
    assert answers["rest"].status_code == 200, answers["rest"].text
    assert answers["rest"].json()["output"] == "by rest"
    assert answers["embedded"] == b"embedded"
    assert answers["route"].status_code == 200, answers["route"].text
    assert answers["route"].content == b"by a route"
    r = answers["broken"]
    assert r.status_code == 422, r.text
    assert r.json()["error"]["type"] == "PluginLoadError"
    assert "plugin 'broken' failed to load" in r.json()["error"]["message"]
    assert "no plugin named 'nope'" in str(answers["nope"])
    # The job waited in the queue (a host claims only the jobs of plugins it serves) and ran
    # once big loaded.
    done = eventually(lambda: (j := app.jobs.get(job)) is not None
                      and j.state == "succeeded" and j, "the job ran")
    assert done.state == "succeeded"


def test_a_call_with_a_short_deadline_gets_a_clear_timeout(started: Started) -> None:
    app = started.app
    with pytest.raises(PluginCompiling, match=r"plugin 'big' is still loading: waited 50 ms"):
        app.plugins.call("big", "echo", b"", wait_s=0.05)

    async def from_the_loop() -> None:
        with pytest.raises(PluginCompiling, match="still loading"):
            await app.plugins.acall("big", "echo", b"", wait_s=0.05)
        with pytest.raises(PluginCompiling, match="still loading"):
            await app.plugins.submit("big", "echo", b"", wait_s=0.05)

    asyncio.run(from_the_loop())
    # A route waits within its own deadline.
    r = httpx.post(f"{started.url}/http/hurried", content=b"x", timeout=30)
    assert r.status_code == 504, r.text
    assert "plugin 'big' is still loading (waited 200 ms)" in r.text
    # sandbox.load_wait_ms bounds the REST call: 503, a moment's matter.
    app.plugins.load_wait_s = 0.05
    r = started.invoke("big")
    assert r.status_code == 503, r.text
    assert r.json()["error"]["type"] == "PluginCompiling"
    assert "still loading" in r.json()["error"]["message"]
    assert app.plugins.waiting == 0
    app.plugins.load_wait_s = 30.0
    _Held.gate.set()
    assert app.plugins.call("big", "echo", b"later") == b"later"
    with pytest.raises(PluginLoadError, match="failed to load"):
        app.plugins.call("broken", "echo", b"")


def test_no_call_path_goes_around_the_wait() -> None:
    """Every call into a plugin passes through PluginHost.call, acall or submit, and each
    of them asks plugins.arrivals first: a path that reached a runtime any other way would
    answer "unknown plugin" (or "still compiling") where it should wait.

    Outside plugins/, nothing imports the modules that reach a runtime (calls, door,
    entries, versions, linking, runtimes) or reads the host's private parts (a server that
    runs a plugin's module itself, a route's proxy component, waits through
    PluginHost.arrival and reads PluginHost.serving_module); inside, calls.call (the guest
    call) is made only by PluginHost.call, a door is submitted to only by acall and submit,
    and those three each go through the arrivals."""
    inner = re.compile(r"omnicore\.plugins\.(calls|door|entries|versions|linking|runtimes|"
                       r"arrivals)\b|from omnicore\.plugins import [^\n]*\b(calls|door|"
                       r"entries|versions|linking|runtimes)\b")
    private = re.compile(r"\bplugins\._[a-z]\w*")  # app.plugins._entries and the like
    outside = [f"{p.relative_to(HOST)}:{m.group(0)}"
               for p in sorted(HOST.rglob("*.py")) if p.parent != HOST / "plugins"
               for pattern in (inner, private) for m in pattern.finditer(p.read_text())]
    # One named exception: routes/proxy.py runs its proxy components' calls (instances of
    # the module PluginHost.serving_module gave it, after PluginHost.arrival) on doors of its
    # own, one a plugin: the door as threads, not as a way into a plugin's runtime.
    assert [o for o in outside if o != "routes/proxy.py:omnicore.plugins.door"] == []
    tree = ast.parse((HOST / "plugins" / "host.py").read_text())
    host = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "PluginHost")
    methods = {f.name: f for f in host.body
               if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)}

    def calls(f: ast.AST, name: str) -> bool:
        return any(isinstance(n, ast.Call) and (
            (isinstance(n.func, ast.Name) and n.func.id == name)
            or (isinstance(n.func, ast.Attribute) and n.func.attr == name))
            for n in ast.walk(f))

    def waits(f: ast.AST) -> bool:  # asks the arrivals, or acall, which does
        return calls(f, "acall") or any(isinstance(n, ast.Attribute) and n.attr == "_arrivals"
                                        for n in ast.walk(f))

    assert {m for m, f in methods.items() if calls(f, "call_entry")} == {"call"}
    assert {m for m, f in methods.items() if calls(f, "_door")} == {"acall", "submit"}
    assert all(waits(methods[m]) for m in ("call", "acall", "submit"))
    # Within plugins/, the guest is called (calls.call) from host.py alone.
    others = [p.name for p in (HOST / "plugins").glob("*.py")
              if p.name not in ("host.py", "calls.py")
              and re.search(r"\bcall_entry\b|from omnicore\.plugins\.calls import", p.read_text())]
    assert others == []


def test_a_call_made_before_the_folder_is_read_waits_for_it() -> None:
    """The console serves before the plugin host reads its folder (app.astart holds
    ``app.plugins.starting()`` from the modules' start to the folder shown): a call then
    waits rather than answering "no plugin named"."""
    from omnicore.plugins.host import PluginHost

    with PluginHost() as host:
        answers: list[Any] = []
        with host.starting():
            caller = threading.Thread(
                target=lambda: answers.append(host.call("echo", "echo", b"early")))
            caller.start()
            eventually(lambda: host.waiting == 1, "the call waiting")
            host.load(echo_wasm())
        caller.join(60)
        assert answers == [b"early"]
        with host.starting():
            pass
        with pytest.raises(PluginNotFound):  # nothing loading: at once
            host.call("nope", "echo", b"")


def _delivering(app: OmniApp) -> tuple[threading.Thread, list[int]]:
    """A shop's order message delivered as a bridge would, on a thread of its own: the
    thread, and the durable deliveries it stored once it returned."""
    from omnicore.subscriptions import BridgeEvent

    stored: list[int] = []
    event = BridgeEvent(topic="orders.created", bridge="shop", data=b'{"id": 1}',
                        message_id="orders:1")
    thread = threading.Thread(target=lambda: stored.append(app.subscriptions.deliver(event)))
    thread.start()
    return thread, stored


def test_a_bridge_message_waits_for_subscribers_still_loading(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A host's bridges consume while its folder loads: a broker's message delivered then
    would miss every durable subscriber still compiling and be acknowledged (lost for it).
    ``Subscriptions.deliver`` holds it, unacknowledged, until the plugins have loaded."""
    import omnicore.plugins.linking as linking
    from tests.event_fixtures import GRANTS, events_wasm

    monkeypatch.setattr(linking, "PluginModule", _Held)
    _Held.gate.clear()
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    write(plugins, "big.wasm", events_wasm("big", [
        {"topic": "orders.*", "handler": "on_event", "durable": True}]))
    app = OmniApp("bridged", overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(plugins),
        "plugins": {"big": {"grants": GRANTS}}})
    starting = threading.Thread(target=app.start)
    starting.start()
    try:
        eventually(lambda: app.serving, "the host serving while big compiles", timeout=60)
        waited = []
        wait_loaded = app.plugins.wait_loaded

        def counted(timeout: float | None = None) -> bool:
            done = wait_loaded(timeout)
            waited.append(done)
            return done

        monkeypatch.setattr(app.plugins, "wait_loaded", counted)
        deliver, stored = _delivering(app)
        # It waited a round with big still compiling, and stored nothing yet.
        eventually(lambda: False in waited, "the delivery waiting for the folder", timeout=60)
        assert app.plugins.get("big").state == "compiling" and stored == []
        assert app.jobs.list(plugin="big") == []
        _Held.gate.set()
        deliver.join(60)
        assert stored == [1]  # big's durable delivery, once it loaded
        assert [j.handler for j in app.jobs.list(plugin="big")] == ["on_event"]
    finally:
        _Held.gate.set()
        starting.join(120)
        if app.state.value == "running":
            app.stop()


def test_a_bridge_message_does_not_wait_for_a_file_dropped_in_later(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the start's load holds a bridge's message: a file dropped into a running host's
    folder, still compiling, was not a subscriber when the message came, and a large one
    would otherwise hold every inbound message, unacknowledged, until it compiled."""
    import omnicore.plugins.linking as linking
    from tests.event_fixtures import GRANTS, events_wasm

    monkeypatch.setattr(linking, "PluginModule", _Held)
    _Held.gate.clear()
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    app = OmniApp("bridged", overrides={
        "data_dir": str(tmp_path / "data"), "plugins_dir": str(plugins),
        "plugins": {"big": {"grants": GRANTS}}})
    app.start()
    try:
        write(plugins, "big.wasm", events_wasm("big", [
            {"topic": "orders.*", "handler": "on_event", "durable": True}]))
        eventually(lambda: "big" in app.plugins and app.plugins.get("big").state == "compiling",
                   "the dropped file compiling", timeout=60)
        deliver, stored = _delivering(app)
        deliver.join(60)  # with big's compile still held at the gate
        assert stored == [0] and app.plugins.get("big").state == "compiling"
    finally:
        _Held.gate.set()
        app.stop()
