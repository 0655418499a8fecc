"""The README's first command serves plugins/demo.yaml's app: every example must load there."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from omnicore.app import OmniApp
from omnicore.errors import GuestError
from omnicore.toolchains import build_all
from tests.dbservers import free_port
from tests.waiting import eventually

ROOT = Path(__file__).resolve().parents[1]


def test_every_example_loads_and_answers_in_the_demo_app(tmp_path: Path,
                                                        module_cache: Path) -> None:
    results = build_all(ROOT / "plugins", ROOT / "build" / "test-plugins")
    assert results and all(r.ok for r in results), [r.error for r in results if not r.ok]
    app_dir = tmp_path / "demo"
    (app_dir / "plugins").mkdir(parents=True)
    shutil.copy(ROOT / "plugins" / "demo.yaml", app_dir / "omnicore.yaml")
    for result in results:
        assert result.output is not None
        shutil.copy(result.output, app_dir / "plugins")

    # No database runs for the demo here: Redis is pointed at a closed port, and the PostgreSQL
    # connector's password was never stored (docs/guides/databases.md: `omnicore secrets set`).
    # No broker either: the bridges are pointed at closed ports, and the host starts all the
    # same (tests/bridges/test_relay_demo.py runs the relay between real brokers).
    closed = f"redis://127.0.0.1:{free_port()}/0"
    # The run's module cache: the Ruby and Python examples compile in 5-25 s each, and the
    # conformance tests have compiled the same bytes already.
    app = OmniApp(config_path=app_dir / "omnicore.yaml", entry_points=False,
                  environ={"OMNICORE_CONNECTORS__CACHE__URL": closed,
                           "OMNICORE_BRIDGES__LEDGER__URL": closed,
                           "OMNICORE_BRIDGES__ORDERS__URL": f"nats://127.0.0.1:{free_port()}"},
                  overrides={"sandbox": {"cache_dir": str(module_cache)}})
    app.start()
    try:
        states = {p.name: p.state for p in app.plugins}
        assert len(states) == len(results)
        assert set(states.values()) == {"loaded"}, states
        # Every name the demo config grants to exists, so no grant is silently unused.
        assert set(app.config.plugins) == set(states)
        for lang, greeting in (("rust", "Hello"), ("go", "Hallo"), ("js", "Hola"),
                               ("c", "Bonjour"), ("python", "Hej"), ("ruby", "Ciao"),
                               ("zig", "Ahoj"), ("as", "Hallå"), ("kotlin", "Tere")):
            out = app.plugins.call_json(f"greeter-{lang}", "greet", {"name": "Ada"})
            assert out == {"message": f"{greeting}, Ada!"}
        html = app.plugins.call("markdown-js", "render", b"# Hi *there*")
        assert b"<h1>Hi <em>there</em></h1>" in html
        # The same in Python, with mistune from PyPI (requirements.txt) inside the component.
        html = app.plugins.call("markdown-python", "render", b"# Hi *there*\n\n~~old~~")
        assert b"<h1>Hi <em>there</em></h1>" in html and b"<del>old</del>" in html
        stats = app.plugins.call_json("textstats-rust", "analyze", {"text": "a@b.io twice twice"})
        assert stats["emails"] == ["a@b.io"]
        assert json.loads(app.plugins.call("counter-go", "count", b'{"by": 2}')) == {"count": 2}
        # A Python plugin (a component) beside the core modules, on the same kv.
        assert app.plugins.call_json("counter-python", "count", {"by": 3}) == {"count": 3}
        # A Ruby plugin (the interpreter pre-initialized with the plugin) on the same kv.
        assert app.plugins.call_json("counter-ruby", "count", {"by": 4}) == {"count": 4}
        # A Kotlin plugin (a Wasm GC module) on the same kv.
        assert app.plugins.call_json("counter-kotlin", "count", {"by": 5}) == {"count": 5}
        # The digests see each other's events (never their own) and count them in kv.
        assert app.plugins.call_json("digest-js", "note", {"text": "hi"}) == {"published": "note"}
        assert app.subscriptions.drain(timeout=30)
        report = app.plugins.call_json("digest-rust", "report")
        assert report["topics"]["plugin.digest-js.note"] == 1
        assert "plugin.digest-js.note" not in app.plugins.call_json("digest-js", "report")["topics"]
        # The notes find what they keep, by words and by likeness.
        for lang in ("rust", "js"):
            added = app.plugins.call_json(f"notes-{lang}", "add", {"text": "Buy basil for pesto"})
            found = app.plugins.call_json(f"notes-{lang}", "find", {"query": "pesto"})
            assert found[0]["id"] == added["id"]
            similar = app.plugins.call_json(f"notes-{lang}", "similar", {"text": "pesto recipe"})
            assert similar[0]["id"] == added["id"]
        # The database examples load without their servers; each call is one clear refusal
        # (tests/test_stock.py and tests/test_ratelimit.py call real servers).
        with pytest.raises(GuestError, match="UNAVAILABLE: connector orders: secret "
                                             "orders-db-password is not set"):
            app.plugins.call_json("stock-rust", "check", {"sku": "A-1"})
        with pytest.raises(GuestError, match="UNAVAILABLE: connector cache"):
            app.plugins.call_json("ratelimit-go", "hit", {"key": "a", "limit": 1, "window_s": 1})
        # The connector needs its token first (tests/test_github_issues.py calls a real server).
        with pytest.raises(GuestError, match="secret 'github_token', which is not set"):
            app.plugins.call_json("github-issues-js", "issues")
        # The relay's bridges are down (no broker) and say so; its handlers answer.
        assert app.plugins.call_json("relay-js", "report") == {"relayed": 0, "cents": 0}
        eventually(lambda: {s["name"]: s["state"] for s in app.bridges.status()}["ledger"]
                   == "down", "the ledger bridge down")
    finally:
        app.stop()
