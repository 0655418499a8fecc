"""Plugins' durable memories and vector collections as read-only MCP resources.

Off by default: ``mcp.resources: true`` in ``omnicore.yaml`` serves them for every plugin, and
a sidecar's ``mcp: {resources: true|false}`` decides for its own plugin. Two resources per
plugin, both JSON:

* ``omnicore://PLUGIN/memory`` — its memories across the tiers, as its own recall ranks them
  without a query, up to its memory grant's ``max_limit``; reading does not count as a recall
  (nothing is promoted by looking);
* ``omnicore://PLUGIN/vectors`` — its collections: name, dimension, metric, count, size.

Nothing here writes: an agent reads what a plugin remembered, and only the plugin (or the
operator) changes it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any, Protocol

import mcp_types as types

from omnicore.mcp.tools import Exposure
from omnicore.plugins.info import PluginInfo
from omnicore.storage.memory import TIERS, MemoryStore
from omnicore.storage.vectors import VectorStore

__all__ = ["KINDS", "Stores", "list_resources", "read_resource"]

SCHEME = "omnicore://"
KINDS = ("memory", "vectors")


class Stores(Protocol):
    """Where the resources are read from (``OmniApp`` is one)."""

    @property
    def memory(self) -> MemoryStore: ...

    @property
    def vectors(self) -> VectorStore: ...


def list_resources(infos: Iterable[PluginInfo], exposure: Exposure) -> list[types.Resource]:
    """The resources of every plugin whose resources are served."""
    out = []
    for info in infos:
        if info.sha256 is not None and exposure.resources(info):  # a module, not a failure
            out += [types.Resource(
                uri=f"{SCHEME}{info.name}/{kind}", name=f"{info.name} {kind}",
                mime_type="application/json",
                description=f"what plugin '{info.name}' stored in omnicore:{kind} (read-only)")
                for kind in KINDS]
    return out


def read_resource(stores: Stores, infos: dict[str, PluginInfo], exposure: Exposure,
                  uri: str) -> str | None:
    """The JSON text of resource ``uri``; None if it is not a served resource."""
    plugin, _, kind = uri.removeprefix(SCHEME).partition("/")
    info = infos.get(plugin)
    if not uri.startswith(SCHEME) or kind not in KINDS or info is None \
            or not exposure.resources(info):
        return None
    body: Any
    if kind == "memory":
        memory = stores.memory.for_plugin(plugin)
        body = [m.as_dict() for m in memory.recall("", TIERS, memory.policy.max_limit)]
    else:
        body = [c.as_dict() for c in stores.vectors.for_plugin(plugin).collections()]
    return json.dumps({"plugin": plugin, kind: body}, ensure_ascii=False)
