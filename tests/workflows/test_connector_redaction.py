"""An upstream that echoes a credential in any encoding (JSON-escaped as PHP does, every
character \\u-escaped, URL-encoded once, twice or with "+", base64 in both alphabets with and
without padding and inside a longer blob, hex) leaks it nowhere: not into the stored step
output, not into what a *viewer* reads from the API and the run page, not into the database,
and not into what a plugin calling the same connector through ``omnicore:http`` receives.

Checked by decoding (tests/egress/echo.py), against a real upstream on 127.0.0.1 and a real
console over HTTP.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from omnicore import OmniApp
from omnicore.console import ConsoleModule
from tests.capabilities.test_http import Guest, http_wasm
from tests.egress.echo import ALL, Echo, leaks
from tests.hosts import CHEAP_PASSWORD_HASH

TOKEN = "tok/en+4f9b~2c7e=1d8a>>?"
EXTRA = "extra/secret+value=42"
PASSWORD = "correct horse battery"

FLOW = "format: omniflow/v1\nname: echoes\nsteps:\n" + "".join(
    f"  - id: e{i}\n    uses: connector:api\n    path: /echo/{enc}\n"
    f"    headers: {{X-Extra: \"${{{{ secrets.EXTRA }}}}\"}}\n" for i, enc in enumerate(ALL))


@pytest.fixture
def echo() -> Iterator[Echo]:
    server = Echo()
    yield server
    server.close()


@pytest.fixture
def app(tmp_path: Path, echo: Echo) -> Iterator[tuple[OmniApp, str]]:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "plugins").mkdir()
    (tmp_path / "workflows" / "echoes.yaml").write_text(FLOW)
    (tmp_path / "omnicore.yaml").write_text(json.dumps({
        "name": "redaction", "data_dir": "data", "plugins_dir": "plugins",
        "workflows": {"dir": "workflows", "poll_s": 0.1},
        "connectors": {"api": {"base_url": echo.base, "auth": "bearer", "secret": "TOKEN"}},
    }))
    started = OmniApp(config_path=tmp_path / "omnicore.yaml", environ={}, entry_points=False,
                      overrides={"console": {"enabled": True, "port": 0,
                                        "password_hash": CHEAP_PASSWORD_HASH},
                                 "sandbox": {"watch": False}})
    module = ConsoleModule()
    started.add_module(module)
    started.start()
    try:
        assert module.console is not None and module.url is not None
        module.console.auth.store.add("viewer", PASSWORD, "viewer")
        started.secrets.set("TOKEN", TOKEN)
        started.secrets.set("EXTRA", EXTRA)
        yield started, module.url
    finally:
        if started.state.value == "running":
            started.stop()


def as_viewer(url: str) -> httpx.Client:
    c = httpx.Client(base_url=url, timeout=30)
    c.get("/login")
    r = c.post("/login", data={"name": "viewer", "password": PASSWORD,
                               "csrf": c.cookies["omnicore_login_csrf"]})
    assert r.status_code == 303, r.text
    return c


def test_no_encoding_of_a_credential_reaches_outputs_viewers_or_plugins(
        app: tuple[OmniApp, str], echo: Echo) -> None:
    omni, url = app
    run = omni.workflows.wait(omni.workflows.start("echoes", {}).id, 60)
    assert run.state == "succeeded", run.error
    # The credentials did go upstream, and every encoding was echoed back.
    assert len(echo.seen) == len(ALL)
    assert all(s["headers"]["Authorization"] == f"Bearer {TOKEN}"
               and s["headers"]["X-Extra"] == EXTRA for s in echo.seen)
    for i, encoding in enumerate(ALL):
        row = omni.workflows.store.step(run.id, f"e{i}")
        assert row is not None and row.state == "succeeded"
        stored = json.dumps(row.output, ensure_ascii=False)
        assert leaks(stored, TOKEN, EXTRA) == [], (encoding, stored)
        assert "[REDACTED]" in row.output["body"]["seen"], (encoding, row.output)

    viewer = as_viewer(url)
    try:
        answer = viewer.get(f"/api/v1/workflow-runs/{run.id}")
        assert answer.status_code == 200 and "[REDACTED]" in answer.text
        assert leaks(answer.text, TOKEN, EXTRA) == []
        page = viewer.get(f"/workflows/runs/{run.id}")
        assert page.status_code == 200 and "REDACTED" in page.text
        assert leaks(page.text, TOKEN, EXTRA) == []
    finally:
        viewer.close()

    omni.plugins.load(http_wasm("web"), grants={"http": {"connectors": ["api"]}},
                      limits={"timeout_ms": 5000})
    guest = Guest(omni, "web")
    for encoding in ALL:
        block = guest.raw({"connector": "api", "path": f"/echo/{encoding}"})
        assert b"[REDACTED]" in block and leaks(block, TOKEN) == [], (encoding, block)

    omni.stop()
    db = b"".join(p.read_bytes() for p in Path(omni.data_dir).glob("omnicore.db*"))
    assert leaks(db, TOKEN, EXTRA) == []
