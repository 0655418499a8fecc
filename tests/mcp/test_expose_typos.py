"""A typo in omnicore.yaml's ``mcp.expose`` (a pattern that exposes none of the app's
plugins' handlers) is refused wherever the tools are served, with the one check ``omnicore
mcp`` runs (omnicore.mcp.tools.check_expose), naming the key, where it is set, the pattern and
the handlers there are: ``omnicore run`` stops; the console's ``/mcp`` answers every agent
with it (the SDK's client sees the message) until a plugin makes the pattern match; a config
reload that brings one changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from mcp.shared.exceptions import MCPError

from tests.cli.test_cli_traps import appdir, omnicore
from tests.mcp.mcp_fixtures import TOOLS_MANIFEST, Host, http_session, wasm
from tests.test_app_reload import GREETER, Running
from tests.waiting import eventually

__all__ = ["appdir"]

HANDLERS = "tools: echo, hidden, trap, spin, fail, plain"


def test_omnicore_run_stops_on_a_typo_in_mcp_expose(appdir: Path) -> None:
    config = appdir / "omnicore.yaml"
    config.write_text(config.read_text() + "console: {port: 0}\n"
                      "mcp:\n  expose: [conf/get, 'echo/vesion']\n")
    done = omnicore("run", str(appdir), cwd=appdir, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"Error: mcp.expose ({config}:" in done.stderr, done.stderr
    assert "'echo/vesion' matches no handler (echo: echo, version, " in done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture
def typo_host(tmp_path: Path) -> Iterator[Host]:
    h = Host(tmp_path / "app", ["tools/echo", "tools/ehco", "stamper/*"])
    try:
        yield h
    finally:
        h.stop()


def mcp_error(exc: BaseException) -> MCPError | None:
    """The MCP error inside ``exc`` and the exception groups around it."""
    if isinstance(exc, MCPError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = mcp_error(inner)
        if found is not None:
            return found
    return None


def test_the_consoles_mcp_answers_the_typo_to_every_agent(typo_host: Host) -> None:
    async def refused() -> str:
        try:
            async with http_session(typo_host.url, typo_host.admin_token) as session:
                await session.list_tools()
        except Exception as exc:  # the session's task groups wrap it
            found = mcp_error(exc)
            if found is None:
                raise
            return str(found)
        return ""

    said = anyio.run(refused)
    assert said.startswith("this host does not serve MCP: mcp.expose ("), said
    assert f"'tools/ehco' matches no handler ({HANDLERS}) (and 1 more)" in said, said

    # The pattern naming a plugin not there yet passes once it arrives: refused for the
    # remaining typo only.
    (typo_host.plugins_dir / "stamper.wasm").write_bytes(
        wasm("tools", {**TOOLS_MANIFEST, "name": "stamper"}))
    eventually(lambda: "stamper" in typo_host.app.plugins, "the new plugin")
    said = anyio.run(refused)
    assert said.endswith(f"'tools/ehco' matches no handler ({HANDLERS})"), said


def test_a_host_without_a_typo_serves(tmp_path: Path) -> None:
    h = Host(tmp_path / "app", ["tools/echo", "tools/e*"])
    try:
        async def names() -> set[str]:
            async with http_session(h.url, h.admin_token) as session:
                return {t.name for t in (await session.list_tools()).tools}

        assert anyio.run(names) == {"tools.echo"}
    finally:
        h.stop()


def test_a_reload_bringing_a_typo_changes_nothing(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    if not GREETER.is_file():
        pytest.skip(f"{GREETER} is not built")
    caplog.set_level("INFO", logger="omnicore.config.reload")
    running = Running(tmp_path)
    try:
        before = running.app.config
        running.doc["mcp"] = {"expose": ["greeter-rust/gret"]}
        running.write()
        eventually(lambda: any("not applied" in r.getMessage() for r in caplog.records),
                   "the refusal")
        said = next(r.getMessage() for r in caplog.records if "not applied" in r.getMessage())
        assert "mcp.expose (" in said and \
            "'greeter-rust/gret' matches no handler (greeter-rust: greet)" in said, said
        assert running.app.config is before and running.reloader.reloads == 0
        # Fixed, it applies.
        seen = running.edit(mcp={"expose": ["greeter-rust/greet"]})
        running.reloaded_after(seen)
        assert running.app.config.mcp.expose == ["greeter-rust/greet"]
    finally:
        running.app.stop()
