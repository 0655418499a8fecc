"""What ``mcp.expose`` patterns expose of an app's plugins (specs/host.md): the check that a
pattern is not a typo, shared by ``omnicore mcp``, ``omnicore run``, the console's ``/mcp``
(omnicore.mcp.tools) and a config reload (app_reload), which sits below the surfaces."""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

from omnicore.errors import ConfigError
from omnicore.plugins.info import PluginInfo

__all__ = ["check_expose", "unmatched_patterns"]


def unmatched_patterns(patterns: Iterable[str], infos: Iterable[PluginInfo]) -> list[str]:
    """What is wrong with each ``mcp.expose`` pattern that exposes nothing of ``infos`` (the
    app's plugins), one sentence each: a pattern naming no plugin of the app, or a plugin
    none of whose handlers it matches (a typo, since they are the app's own plugins). A
    plugin that failed to load has no handlers to check: its patterns pass."""
    plugins = list(infos)
    out = []
    for pattern in patterns:
        plugin, _, handler = pattern.partition("/")
        named = [i for i in plugins if fnmatchcase(i.name, plugin)]
        if not named:
            known = ", ".join(sorted(i.name for i in plugins)) or "none"
            out.append(f"'{pattern}' names no plugin of the app (plugins: {known})")
            continue
        if any(not i.handlers and i.state != "loaded" for i in named):
            continue
        if not any(fnmatchcase(h, handler) for i in named for h in i.handlers):
            known = "; ".join(f"{i.name}: {', '.join(i.handlers) or 'none'}" for i in named)
            out.append(f"'{pattern}' matches no handler ({known})")
    return out


def check_expose(patterns: Iterable[str], source: str, infos: Iterable[PluginInfo]) -> None:
    """ConfigError when a pattern of omnicore.yaml's ``mcp.expose`` (set in ``source``)
    exposes nothing of the app's plugins ``infos``: a typo an agent would only meet as a
    missing tool. The message names the key, where it is set, the pattern and the handlers
    there are. ``omnicore mcp`` and ``omnicore run`` refuse to serve with it, the console's
    ``/mcp`` answers it, and a config reload that brings one changes nothing."""
    problems = unmatched_patterns(patterns, infos)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ConfigError(f"mcp.expose ({source}): {problems[0]}{more}", key="mcp.expose",
                          source=source)
