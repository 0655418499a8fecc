"""The prompts and resources a plugin declares in its manifest (specs/abi.md §5.2), served by
its handlers.

A manifest's ``prompts`` entry ``{"name", "title"?, "description"?, "arguments"?: [{"name",
"description"?, "required"?}], "handler"}`` is an MCP prompt: ``prompts/get`` calls the handler
with the arguments (a JSON object of strings) and answers what it returns, MCP's
``GetPromptResult`` (``{"messages": [...], "description"?}``). A ``resources`` entry
``{"uri" | "uri_template", "name", "title"?, "description"?, "mime_type"?, "handler"}`` is a
resource or a resource template (RFC 6570 level 1: ``{var}`` matches one path segment):
``resources/read`` calls the handler with ``{"uri", "params"}`` (the template's variables) and
answers its ``{"contents": [{"uri"?, "mimeType"?, "text" | "blob"}]}`` (``uri`` defaults to the
one read, ``mimeType`` to the entry's).

Nothing is served unless the operator exposes the handler (``mcp.expose``, as for tools); a
handler named here is never a tool. Prompt names take the plugin's tool-name prefix
(``PLUGIN.``, or the sidecar's ``mcp.prefix``); URIs are the plugin's own.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import mcp_types as types

from omnicore.mcp.tools import LISTED_STATES, Exposure, tool_name
from omnicore.plugins.info import PluginInfo

__all__ = ["Declared", "PluginPrompt", "PluginResource", "declared_of"]

log = logging.getLogger("omnicore.mcp")

_VARIABLE = re.compile(r"\{([A-Za-z0-9_]+)\}")


@dataclass(frozen=True)
class PluginPrompt:
    """One exposed prompt: its MCP form and the handler that renders it."""

    plugin: str
    handler: str
    prompt: types.Prompt


@dataclass(frozen=True)
class PluginResource:
    """One exposed resource or resource template and the handler that reads it."""

    plugin: str
    handler: str
    mime_type: str | None
    resource: types.Resource | None = None
    template: types.ResourceTemplate | None = None
    pattern: re.Pattern[str] | None = None

    def params(self, uri: str) -> dict[str, str] | None:
        """The template's variables in ``uri`` (``{}`` for a plain resource's own URI); None
        when ``uri`` is not this resource's."""
        if self.resource is not None:
            return {} if uri == self.resource.uri else None
        assert self.pattern is not None
        match = self.pattern.fullmatch(uri)
        return match.groupdict() if match else None


@dataclass(frozen=True)
class Declared:
    """Every exposed prompt by name and every exposed resource, in manifest order."""

    prompts: dict[str, PluginPrompt]
    resources: list[PluginResource]

    def resource(self, uri: str) -> tuple[PluginResource, dict[str, str]] | None:
        """The resource serving ``uri`` (a plain one before any template) and its variables."""
        for entry in sorted(self.resources, key=lambda r: r.resource is None):
            params = entry.params(uri)
            if params is not None:
                return entry, params
        return None


def declared_of(infos: Iterable[PluginInfo], exposure: Exposure) -> Declared:
    """The exposed prompts and resources of the listed plugins among ``infos``."""
    prompts: dict[str, PluginPrompt] = {}
    resources: list[PluginResource] = []
    for info in infos:
        if info.state not in LISTED_STATES:
            continue
        for entry in _entries(info, "prompts", exposure):
            try:
                prompt = _prompt(info, entry, exposure)
            except ValueError as exc:
                log.warning("mcp: a prompt of plugin '%s' is not served: %s", info.name, exc)
                continue
            prompts.setdefault(prompt.prompt.name, prompt)
        for entry in _entries(info, "resources", exposure):
            try:
                resources.append(_resource(info, entry))
            except ValueError as exc:
                log.warning("mcp: a resource of plugin '%s' is not served: %s", info.name, exc)
    return Declared(prompts, resources)


def _entries(info: PluginInfo, key: str, exposure: Exposure) -> list[Mapping[str, Any]]:
    entries = info.manifest.get(key)
    return [e for e in entries if isinstance(e, Mapping) and isinstance(e.get("handler"), str)
            and e["handler"] in info.handlers and exposure.exposes(info, e["handler"])] \
        if isinstance(entries, list) else []


def _text(entry: Mapping[str, Any], key: str) -> str | None:
    value = entry.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"its {key} must be a string")
    return value


def _prompt(info: PluginInfo, entry: Mapping[str, Any], exposure: Exposure) -> PluginPrompt:
    name = _text(entry, "name")
    if not name:
        raise ValueError("it has no name")
    arguments = entry.get("arguments", [])
    if not isinstance(arguments, list) or not all(
            isinstance(a, Mapping) and isinstance(a.get("name"), str) for a in arguments):
        raise ValueError(f"prompt '{name}': arguments must be a list of {{name, description?, "
                         "required?}}")
    prompt = types.Prompt(
        name=tool_name(info.name, name, exposure.prefix(info)), title=_text(entry, "title"),
        description=_text(entry, "description") or info.description or None,
        arguments=[types.PromptArgument(name=a["name"], description=a.get("description"),
                                        required=a.get("required") is True)
                   for a in arguments])
    return PluginPrompt(info.name, entry["handler"], prompt)


def _resource(info: PluginInfo, entry: Mapping[str, Any]) -> PluginResource:
    uri, template = _text(entry, "uri"), _text(entry, "uri_template")
    name = _text(entry, "name") or uri or template
    mime = _text(entry, "mime_type")
    common: dict[str, Any] = {"name": name or "", "title": _text(entry, "title"),
                              "description": _text(entry, "description"), "mime_type": mime}
    if uri and not template:
        return PluginResource(info.name, entry["handler"], mime,
                              resource=types.Resource(uri=uri, **common))
    if template and not uri:
        parts = _VARIABLE.split(template)
        # Even parts are literal text, odd ones variable names: {id} is one path segment.
        pattern = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)"
                          for i, p in enumerate(parts))
        return PluginResource(info.name, entry["handler"], mime,
                              template=types.ResourceTemplate(uri_template=template, **common),
                              pattern=re.compile(pattern))
    raise ValueError(f"resource '{name}' needs exactly one of uri and uri_template")
