"""The Python SDK's memory, vectors and secrets (sdk/python/omnicore_plugin/, the
``omnicore:plugin`` WIT interfaces of the same names): one real plugin built by componentize-py
(tests/sdk/python_recall), run by a real app under grants, with the ABI v1 semantics and
limits; and the same plugin's code under the SDK's TestHost."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from omnicore.app import OmniApp
from omnicore.errors import NeedsGrant
from tests.compiler import ENVIRON
from tests.component_fixtures import PYTHON_SOURCES, python_plugin

pytestmark = pytest.mark.timeout(900)

GRANTS = {"memory": {"max_text_bytes": 64}, "vectors": {"max_dim": 8},
          "secrets": {"expose": ["api_token", "unset"]}}


@pytest.fixture(scope="module")
def recall_wasm() -> Path:
    return python_plugin("python_recall")


def _app(root: Path, wasm: Path, grants: object) -> OmniApp:
    plugins = root / "plugins"
    plugins.mkdir(parents=True)
    (plugins / "pyrecall.wasm").write_bytes(wasm.read_bytes())
    app = OmniApp("pyrecall", overrides={
        "data_dir": str(root / "data"), "plugins_dir": str(plugins),
        "sandbox": {"cache_dir": str(root.parent / "py-recall-cache"), "watch": False},
        "plugins": {"pyrecall": {"grants": grants}}}, environ=ENVIRON, entry_points=False)
    app.start()
    return app


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory, recall_wasm: Path) -> Iterator[OmniApp]:
    app = _app(tmp_path_factory.mktemp("py-recall"), recall_wasm, GRANTS)
    app.secrets.set("api_token", "tok-123")
    app.secrets.set("other", "not yours")
    yield app
    app.stop()


def call(app: OmniApp, handler: str, arg: Any) -> Any:
    return json.loads(app.plugins.call("pyrecall", handler, json.dumps(arg).encode()))


def test_memories_are_remembered_recalled_and_forgotten(app: OmniApp) -> None:
    first = call(app, "note", {"text": "the cat sat on the mat", "tier": "long",
                               "metadata": {"kind": "pet"}})["ok"]
    call(app, "note", {"text": "stocks fell today", "tier": "short"})
    found = call(app, "recall", {"query": "cat mat"})["ok"]
    assert found[0] == {"id": first, "tier": "long", "text": "the cat sat on the mat",
                        "metadata": {"kind": "pet"}}
    assert call(app, "recall", {"query": "cat", "tiers": ["short"]})["ok"] == []
    # The host's own view: the same plugin-scoped store core-module plugins use.
    assert [m.text for m in app.memory.for_plugin("pyrecall").recall("cat")] == [
        "the cat sat on the mat"]
    assert call(app, "forget", first) == {"ok": True}
    assert call(app, "forget", first) == {"ok": False}


def test_memory_limits_are_the_grants(app: OmniApp) -> None:
    # max_text_bytes 64: one byte over is TOO_LARGE, nothing stored.
    assert call(app, "note", {"text": "x" * 65})["error"] == "TOO_LARGE"
    assert call(app, "note", {"text": "x" * 64})["ok"] > 0
    assert call(app, "note", {"text": ""})["error"] == "INVALID"


def test_vectors_are_upserted_searched_and_deleted(app: OmniApp) -> None:
    assert call(app, "put", {"collection": "docs", "id": "a", "vector": [1, 0, 0],
                             "metadata": {"lang": "en"}}) == {"ok": None}
    call(app, "put", {"collection": "docs", "id": "b", "vector": [0, 1, 0],
                      "metadata": {"lang": "fr"}})
    found = call(app, "nearest", {"collection": "docs", "vector": [0.9, 0.1, 0]})["ok"]
    assert [m["id"] for m in found] == ["a", "b"]
    assert found[0]["metadata"] == {"lang": "en"} and found[0]["score"] > 0.9
    only_fr = call(app, "nearest", {"collection": "docs", "vector": [1, 0, 0],
                                    "filter": {"lang": "fr"}})["ok"]
    assert [m["id"] for m in only_fr] == ["b"]
    assert call(app, "drop", {"collection": "docs", "id": "a"}) == {"ok": True}
    assert call(app, "drop", {"collection": "docs", "id": "a"}) == {"ok": False}


def test_vector_refusals_carry_the_abi_codes(app: OmniApp) -> None:
    call(app, "put", {"collection": "dims", "id": "a", "vector": [1, 2, 3]})
    assert call(app, "put", {"collection": "dims", "id": "b", "vector": [1, 2]})["error"] \
        == "INVALID"  # another dimension
    assert call(app, "put", {"collection": "dims", "id": "c",
                             "vector": [1.0] * 9})["error"] == "TOO_LARGE"  # max_dim 8
    assert call(app, "put", {"collection": "", "id": "c", "vector": [1]})["error"] == "INVALID"
    missing = call(app, "nearest", {"collection": "nope", "vector": [1, 0, 0]})
    assert missing["error"] == "NOT_FOUND" and "nope" in missing["detail"]
    assert call(app, "drop", {"collection": "nope", "id": "a"})["error"] == "NOT_FOUND"


def test_secrets_are_read_only_when_exposed(app: OmniApp) -> None:
    assert call(app, "secret", "api_token") == {"ok": "tok-123"}
    assert call(app, "secret", "unset") == {"ok": None}  # exposed, not set
    assert call(app, "secret", "other")["error"] == "DENIED"
    assert call(app, "secret", "")["error"] == "INVALID"


def test_without_the_grants_it_does_not_run(tmp_path: Path, recall_wasm: Path) -> None:
    app = _app(tmp_path, recall_wasm, {"memory": {}})
    try:
        info = app.plugins.get("pyrecall")
        assert info.state == "needs-grant"
        assert "needs grant: omnicore:secrets, omnicore:vectors;" in (info.last_error or "")
        with pytest.raises(NeedsGrant, match="omnicore:secrets"):
            app.plugins.call("pyrecall", "secret", b'"api_token"')
        app.plugins.grant("pyrecall", "vectors")
        app.plugins.grant("pyrecall", "secrets")  # no expose: every name is DENIED
        assert call(app, "secret", "api_token")["error"] == "DENIED"
    finally:
        app.stop()


def test_the_same_code_runs_under_the_test_host(monkeypatch: pytest.MonkeyPatch) -> None:
    sdk = Path(__file__).resolve().parents[2] / "sdk" / "python"
    monkeypatch.syspath_prepend(str(sdk))
    monkeypatch.syspath_prepend(str(PYTHON_SOURCES / "python_recall"))
    for mod in [m for m in sys.modules if m == "plugin" or m.startswith("omnicore_plugin")]:
        monkeypatch.delitem(sys.modules, mod)
    import plugin  # noqa: F401 - registers the handlers
    from omnicore_plugin.testing import TestHost

    with TestHost(secrets={"api_token": b"tok", "unset": None}) as host:
        def run(handler: str, arg: Any) -> Any:
            return json.loads(host.call(handler, json.dumps(arg)))

        mid = run("note", {"text": "the cat sat", "tier": "long"})["ok"]
        assert run("recall", {"query": "cat"})["ok"][0]["id"] == mid
        assert host.memories[mid]["tier"] == 2
        run("put", {"collection": "c", "id": "a", "vector": [1, 0]})
        run("put", {"collection": "c", "id": "b", "vector": [0, 1]})
        assert [m["id"] for m in run("nearest", {"collection": "c", "vector": [1, 0.1]})
                ["ok"]] == ["a", "b"]
        assert run("put", {"collection": "c", "id": "x", "vector": [1]})["error"] == "INVALID"
        assert run("nearest", {"collection": "z", "vector": [1]})["error"] == "NOT_FOUND"
        assert run("secret", "api_token") == {"ok": "tok"}
        assert run("secret", "unset") == {"ok": None}
        assert run("secret", "other")["error"] == "DENIED"
        assert run("forget", mid) == {"ok": True}


def test_ungranted_sockets_and_files_answer_wasis_refusal(app: OmniApp) -> None:
    # componentize-py imports wasi:sockets and wasi:filesystem in every build: linked, and
    # each use refused by WASI (access-denied: CPython's PermissionError), never a trap.
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(0.5)  # a connection made would already be queued: accept at once
        answer = call(app, "dial", srv.getsockname()[1])
        assert answer["error"] == "PermissionError", answer
        with pytest.raises(TimeoutError):
            srv.accept()
    assert "error" in call(app, "lookup", "localhost")  # name lookup is off
    assert call(app, "read", "/etc/passwd") == {"error": "FileNotFoundError"}  # no preopens
    assert call(app, "secret", "api_token") == {"ok": "tok-123"}  # the instance still serves
