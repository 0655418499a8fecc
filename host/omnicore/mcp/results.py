"""How a handler's output becomes an MCP tool result, and a plugin's tools a ``tools/list``
answer: the shapes the server sends, apart from how it routes requests."""

from __future__ import annotations

import base64
import json

import mcp_types as types
from mcp_types import methods as _methods

from omnicore.mcp.tools import Tool

__all__ = ["Listing", "content_result", "listed", "output_result", "tool_error"]


class Listing:
    """One plugin's tools (as :meth:`Exposure.tools` answered them) as ``tools/list`` has
    them: the SDK's objects, and each tool's JSON per protocol revision, validated once."""

    def __init__(self, tools: dict[str, Tool], tasks: bool) -> None:
        self.tools = tools
        self.listed = [listed(t, tasks) for t in tools.values()]
        self._wire: dict[str, list[bytes]] = {}

    def wire(self, version: str) -> list[bytes]:
        parts = self._wire.get(version)
        if parts is None:
            dumped = [t.model_dump(by_alias=True, mode="json", exclude_none=True)
                      for t in self.listed]
            shaped = _methods.serialize_server_result("tools/list", version, {"tools": dumped})
            parts = self._wire[version] = [json.dumps(t, separators=(",", ":")).encode()
                                           for t in shaped["tools"]]
        return parts


def listed(tool: Tool, tasks: bool) -> types.Tool:
    """``tool`` as ``tools/list`` shows it."""
    # Every hint is said outright: MCP's defaults (destructive, open world) are the
    # pessimistic ones, and a plugin is neither unless its manifest or grants say so.
    return types.Tool(
        name=tool.name, title=tool.title, description=tool.description,
        input_schema=dict(tool.input_schema),
        output_schema=dict(tool.output_schema) if tool.output_schema is not None else None,
        annotations=types.ToolAnnotations(
            title=tool.title, read_only_hint=tool.read_only,
            destructive_hint=None if tool.read_only else tool.destructive,
            open_world_hint=tool.open_world),
        # Any call may be a task; a long-running tool's plain call is one the client waits on,
        # unless its manifest says it runs only as a task.
        execution=types.ToolExecution(task_support="required" if tool.task_required
                                      else "optional") if tasks else None)


def tool_error(message: str) -> types.CallToolResult:
    """A tool error: the call failed, ``message`` says why (one line)."""
    return types.CallToolResult(content=[types.TextContent(text=message)], is_error=True)


def content_result(tool: Tool, out: bytes) -> types.CallToolResult:
    """The output of a handler that answers MCP's tool result (``"content": true``)."""
    try:
        return types.CallToolResult.model_validate_json(out, by_name=False)
    except ValueError as exc:
        return tool_error(f"handler '{tool.handler}' of plugin '{tool.plugin}' says it answers an "
                      f"MCP tool result, but its output is none: "
                      f"{str(exc).splitlines()[0][:200]}")


def output_result(out: bytes) -> types.CallToolResult:
    """The handler's output as the first text content (base64 if it is not UTF-8), and as
    structured content when it is a JSON object."""
    try:
        text = out.decode()
    except UnicodeDecodeError:
        return types.CallToolResult(content=[types.TextContent(
            text=base64.b64encode(out).decode())])
    structured = None
    if text[:1] == "{":
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        structured = value if isinstance(value, dict) else None
    return types.CallToolResult(content=[types.TextContent(text=text)],
                                structured_content=structured)

