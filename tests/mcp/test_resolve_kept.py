"""A tool found by name is kept between calls (``ToolServer.resolve``: every tools/call asks,
and finding one costs a snapshot of its plugin and the check of what it is made of), and is
found again when anything it is made of changes: the sidecar's rules, the operator's, the
plugin itself (its unload, a reload), the app's config."""

from __future__ import annotations

import asyncio
from pathlib import Path

from omnicore import OmniApp
from omnicore.mcp.server import ToolServer
from tests.mcp.mcp_fixtures import TOOLS_MANIFEST, make_app, wasm


def test_a_kept_tool_follows_every_change_it_is_made_of(tmp_path: Path) -> None:
    appdir = make_app(tmp_path / "app", [])
    sidecar = appdir / "plugins" / "tools.yaml"
    sidecar.write_text("mcp:\n  expose: [echo]\n")
    app = OmniApp(config_path=appdir / "omnicore.yaml", default_modules=False)
    try:
        app.plugins.watch_folder(app.config.plugins_dir, watch=False)
        tools = ToolServer(app, tasks=False)

        async def main() -> None:
            tools.attach(asyncio.get_running_loop())
            try:
                first = tools.resolve("tools.echo")
                assert first is not None and tools.resolve("tools.echo") is first  # kept
                # The sidecar edited: no longer exposed.
                sidecar.write_text("mcp:\n  expose: [plain]  # edited\n")
                assert tools.resolve("tools.echo") is None
                sidecar.write_text("mcp:\n  expose: [echo]\n")
                assert tools.resolve("tools.echo") is not None
                # The operator's settings expose another handler, then hide this one.
                sidecar.unlink()
                assert tools.resolve("tools.echo") is None
                operator = app.plugins.operator
                assert operator is not None
                operator.change("tools", lambda doc: {**doc, "mcp": {"expose": ["echo"]}})
                assert tools.resolve("tools.echo") is not None
                operator.change("tools", lambda doc: {**doc, "mcp": {"expose": ["plain"]}})
                assert tools.resolve("tools.echo") is None
                assert tools.resolve("tools.plain") is not None
                # The plugin reloaded without the handler, then unloaded.
                manifest = {**TOOLS_MANIFEST, "handlers": ["echo", "fail"]}
                (appdir / "plugins" / "tools.wasm").write_bytes(wasm("tools", manifest))
                app.plugins.reload_file("tools", appdir / "plugins" / "tools.wasm")
                assert tools.resolve("tools.plain") is None
                app.plugins.unload("tools")
                assert tools.resolve("tools.echo") is None
            finally:
                tools.detach()

        asyncio.run(main())
    finally:
        app.close()
