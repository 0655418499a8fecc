"""The console's switch per handler: serve it as an MCP tool or not, kept in the plugin's
operator settings in the app's database (``mcp.expose``; omnicore.plugins.operator), so it
lasts and every instance serves the same tools.

Each change is recorded in the audit log. A handler exposed by ``omnicore.yaml`` or by the
plugin's sidecar is shown as such and cannot be hidden from the console (those are the
operator's files, not the console's); nor can one that a broader pattern exposes (``*``),
which the message names. After a change, :class:`McpToolsChanged` on ``app.events`` makes
this instance's MCP server tell its clients; the others' hear of it as
``plugin.settings_changed``.
"""

from __future__ import annotations

import glob
import logging
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any, ClassVar

from omnicore.core.events import Event
from omnicore.errors import ConfigError, HandlerNotFound, PluginError
from omnicore.mcp.tools import Exposure, tool_name

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
    #: ``"omnicore.yaml"``, ``"sidecar"`` or ``"operator"`` when exposed, else None.
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
    exposure = Exposure(app.config.mcp.expose, operator=app.plugins.operator)
    out = []
    for handler in info.handlers:
        rule = exposure.rule(info, handler)
        out.append(HandlerTool(handler, tool_name(name, handler), rule and rule[0],
                               rule and rule[1]))
    return out


def set_exposed(app: Any, name: str, handler: str, exposed: bool, *, by: str = "operator",
                origin: str | None = None) -> list[HandlerTool]:
    """Expose (or hide) ``handler`` of plugin ``name`` in its operator settings; the handlers
    after.

    The change is an entry of the audit log (``mcp.expose`` / ``mcp.hide``, actor ``by``,
    target ``PLUGIN/HANDLER``, before and after: the operator's patterns).
    """
    info = app.plugins.get(name)
    if handler not in info.handlers:
        raise HandlerNotFound(f"plugin '{name}' has no handler '{handler}' (handlers: "
                              f"{', '.join(info.handlers) or 'none'})", plugin=name,
                              handler=handler)
    operator = app.plugins.operator
    if info.source is None or operator is None:
        raise PluginError(f"plugin '{name}' was loaded from bytes; there are no operator "
                          "settings to keep its MCP tools in (use mcp.expose in omnicore.yaml)",
                          plugin=name)
    rule = Exposure(app.config.mcp.expose, operator=operator).rule(info, handler)
    if (rule is not None) == exposed:
        return handler_tools(app, name)
    if rule is not None and rule[0] in ("omnicore.yaml", "sidecar"):
        where = "omnicore.yaml" if rule[0] == "omnicore.yaml" else f"the sidecar of {name}"
        raise ConfigError(f"handler '{handler}' of plugin '{name}' is exposed by mcp.expose "
                          f"'{rule[1]}' in {where}; remove it there to hide it",
                          key="mcp.expose")

    def edit(doc: dict[str, Any]) -> dict[str, Any]:
        section = dict(doc.get("mcp") or {})
        patterns = [p for p in section.get("expose", []) if p != glob.escape(handler)]
        broader = next((p for p in patterns if fnmatchcase(handler, p)), None)
        if not exposed and broader is not None:
            raise ConfigError(f"handler '{handler}' of plugin '{name}' is exposed by the pattern "
                              f"'{broader}' of its operator settings; change that pattern to "
                              "hide it", key="mcp.expose")
        if exposed:
            patterns.append(glob.escape(handler))  # a handler named "a*" means itself only
        return {**doc, "mcp": {**section, "expose": patterns}}

    before, after = operator.change(name, edit, by=by)
    app.storage.audit.append(by, "mcp.expose" if exposed else "mcp.hide", f"{name}/{handler}",
                             (before.get("mcp") or {}).get("expose", []),
                             after["mcp"]["expose"], origin, time.time())
    log.info("mcp: %s %s handler '%s' of plugin '%s' as tool '%s'", by,
             "exposed" if exposed else "hid", handler, name, tool_name(name, handler))
    app.plugins.settings_changed(name)
    app.events.publish(McpToolsChanged(plugin=name))
    return handler_tools(app, name)
