"""Prompts and resources a plugin declares in its manifest (omnicore.mcp.declared): which are
served, under which names, which URI a template matches (serving them: test_catalog.py)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from omnicore.mcp.declared import declared_of
from omnicore.mcp.tools import Exposure, tools_of
from omnicore.plugins.info import PluginInfo

DECLARING = {
    "prompts": [{"name": "greet", "description": "Greets", "handler": "render",
                 "arguments": [{"name": "who", "required": True}, {"name": "how"}]},
                {"name": "hidden", "handler": "secret"},
                {"name": "bad", "handler": "render", "arguments": "who"}],
    "resources": [{"uri": "notes://index", "name": "index", "mime_type": "text/plain",
                   "handler": "read"},
                  {"uri_template": "notes://note/{id}/v/{version}", "name": "note",
                   "handler": "read"},
                  {"uri_template": "notes://index", "name": "shadowed", "handler": "read"},
                  {"name": "neither", "handler": "read"}]}


def info(manifest: dict[str, Any], name: str = "p") -> PluginInfo:
    return PluginInfo(name=name, state="loaded", source=None, description="a plugin",
                      handlers=("render", "read", "secret", "tool"), manifest=manifest)


def test_exposed_prompts_and_resources_are_declared_under_the_plugins_prefix(
        caplog: pytest.LogCaptureFixture) -> None:
    exposure = Exposure(["p/render", "p/read", "p/tool"])
    with caplog.at_level(logging.WARNING, "omnicore.mcp"):
        declared = declared_of([info(DECLARING)], exposure)
    assert list(declared.prompts) == ["p.greet"]  # "hidden": its handler is not exposed
    prompt = declared.prompts["p.greet"].prompt
    assert (prompt.description, [(a.name, a.required) for a in prompt.arguments or ()]) == \
        ("Greets", [("who", True), ("how", False)])
    assert [r.resource.uri if r.resource else r.template.uri_template  # type: ignore[union-attr]
            for r in declared.resources] == ["notes://index", "notes://note/{id}/v/{version}",
                                             "notes://index"]
    assert "prompt 'bad': arguments must be a list" in caplog.text
    assert "resource 'neither' needs exactly one of uri and uri_template" in caplog.text
    # A handler that renders a prompt or reads a resource is never a tool.
    assert list(tools_of([info(DECLARING)], exposure)) == ["p.tool"]


def test_a_uri_finds_its_resource_and_the_templates_variables() -> None:
    declared = declared_of([info(DECLARING)], Exposure(["p/*"]))
    found = declared.resource("notes://note/7/v/2")
    assert found is not None and found[1] == {"id": "7", "version": "2"}
    plain = declared.resource("notes://index")
    assert plain is not None and plain[0].resource is not None and plain[1] == {}
    assert declared.resource("notes://note/7/v/2/more") is None  # {var} is one segment
    assert declared.resource("notes://note//v/2") is None


def test_nothing_is_declared_for_a_plugin_that_is_not_listed() -> None:
    failed = PluginInfo(name="p", state="needs-grant", source=None, handlers=("render",),
                        manifest=DECLARING)
    declared = declared_of([failed], Exposure(["p/*"]))
    assert declared.prompts == {} and declared.resources == []
