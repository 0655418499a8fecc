"""The console's switch per handler: serve it as an MCP tool or not, kept in the plugin's
sidecar (``mcp.expose``), so it lasts and the operator can read it in the file.

Each change is recorded in the audit log. A handler exposed by ``omnicore.yaml`` is shown as
such and cannot be hidden from the console (the app config is the operator's file, not the
console's); nor can one that a broader pattern of the sidecar exposes (``*``), which the
message names. After a change, :class:`McpToolsChanged` on ``app.events`` makes every MCP
server tell its clients.
"""

from __future__ import annotations

import glob
import logging
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, ClassVar

from omnicore.core.events import Event
from omnicore.errors import ConfigError, HandlerNotFound, PluginError
from omnicore.mcp.tools import Exposure, tool_name
from omnicore.plugins.sidecar import read_sidecar_data, write_sidecar_data

__all__ = ["HandlerTool", "McpToolsChanged", "handler_tools", "set_exposed"]

log = logging.getLogger("omnicore.mcp")


@dataclass(frozen=True, slots=True, kw_only=True)
class McpToolsChanged(Event):
    """The MCP tools of ``plugin`` changed without a reload (a sidecar's ``mcp.expose``)."""

    topic: ClassVar[str] = "mcp.tools_changed"
    plugin: str


@dataclass(frozen=True)
class HandlerTool:
    """One handler of a plugin as the console shows it."""

    handler: str
    tool: str
    #: ``"omnicore.yaml"`` or ``"sidecar"`` when exposed, else None.
    exposed_by: str | None
    #: The pattern that exposes it.
    rule: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"handler": self.handler, "tool": self.tool, "exposed": self.exposed_by is not None,
                "exposed_by": self.exposed_by, "rule": self.rule}


def handler_tools(app: Any, name: str) -> list[HandlerTool]:
    """Every handler of plugin ``name`` with its tool name and whether (and by what) it is
    exposed."""
    info = app.plugins.get(name)
    exposure = Exposure(app.config.mcp.expose)
    out = []
    for handler in info.handlers:
        rule = exposure.rule(info, handler)
        out.append(HandlerTool(handler, tool_name(name, handler), rule and rule[0],
                               rule and rule[1]))
    return out


def set_exposed(app: Any, name: str, handler: str, exposed: bool, *, by: str = "operator",
                origin: str | None = None) -> list[HandlerTool]:
    """Expose (or hide) ``handler`` of plugin ``name`` in its sidecar; the handlers after.

    The change is an entry of the audit log (``mcp.expose`` / ``mcp.hide``, actor ``by``,
    target ``PLUGIN/HANDLER``, before and after: the sidecar's patterns).
    """
    info = app.plugins.get(name)
    if handler not in info.handlers:
        raise HandlerNotFound(f"plugin '{name}' has no handler '{handler}' (handlers: "
                              f"{', '.join(info.handlers) or 'none'})", plugin=name,
                              handler=handler)
    if info.source is None:
        raise PluginError(f"plugin '{name}' was loaded from bytes; there is no sidecar to "
                          "keep its MCP tools in (use mcp.expose in omnicore.yaml)", plugin=name)
    rule = Exposure(app.config.mcp.expose).rule(info, handler)
    if (rule is not None) == exposed:
        return handler_tools(app, name)
    if rule is not None and rule[0] == "omnicore.yaml":
        raise ConfigError(f"handler '{handler}' of plugin '{name}' is exposed by mcp.expose "
                          f"'{rule[1]}' in omnicore.yaml; remove it there to hide it",
                          key="mcp.expose")
    wasm = Path(info.source)
    data = read_sidecar_data(wasm)
    section = dict(data.get("mcp") or {})
    before = list(section.get("expose", []))
    patterns = [p for p in before if p != glob.escape(handler)]
    broader = next((p for p in patterns if fnmatchcase(handler, p)), None)
    if not exposed and broader is not None:
        raise ConfigError(f"handler '{handler}' of plugin '{name}' is exposed by the pattern "
                          f"'{broader}' in its sidecar; edit that pattern to hide it",
                          key="mcp.expose")
    if exposed:
        patterns.append(glob.escape(handler))  # a handler named "a*" means itself only
    section["expose"] = patterns
    data["mcp"] = section
    path = write_sidecar_data(wasm, data)
    app.storage.audit.append(by, "mcp.expose" if exposed else "mcp.hide", f"{name}/{handler}",
                             before, patterns, origin, time.time())
    log.info("mcp: %s %s handler '%s' of plugin '%s' as tool '%s' (%s)", by,
             "exposed" if exposed else "hid", handler, name, tool_name(name, handler), path)
    app.events.publish(McpToolsChanged(plugin=name))
    return handler_tools(app, name)
