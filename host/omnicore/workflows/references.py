"""A parsed workflow checked against what the app has loaded: its plugins and their handlers,
its connectors and their kinds, its other workflows, the plugin versions hosts can run. These
come and go, so :mod:`omnicore.workflows.definition` parses without them and this module
answers at validation, at load and when a step runs (:func:`connector_mismatch`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from omnicore.workflows.definition import Collect, Workflow
from omnicore.workflows.errors import Problem

__all__ = ["check_references", "connector_mismatch"]


def connector_mismatch(step: str, name: str, kind: str, statement: str) -> str | None:
    """Why a step cannot use connector ``name`` of ``kind`` (``http``, ``postgres``, ``mysql``,
    ``redis``) the way it does — an HTTP request (``statement`` empty) or a statement
    (``query``/``execute``) — or None when it can. The validator and the step's run say it."""
    if kind == "redis":
        return (f"step {step!r}: connector {name!r} is a redis database, which a workflow step "
                "cannot use (steps send HTTP requests and postgres/mysql statements): call a "
                "plugin granted redis on it instead")
    if not statement and kind != "http":
        return (f"step {step!r}: connector {name!r} is a {kind} database, not an HTTP API: run "
                f"a statement with uses: connector:{name}/query (rows) or "
                f"connector:{name}/execute (changes) and with: {{sql: ..., params: [...]}}")
    if statement and kind == "http":
        return (f"step {step!r}: connector {name!r} is an HTTP connector, and /{statement} "
                "runs a statement on a postgres or mysql connector: for an HTTP request "
                f"write uses: connector:{name} with a path")
    return None


def check_references(wf: Workflow, *, plugins: Mapping[str, Iterable[str]] | None,
                     connectors: Mapping[str, str] | None, workflows: Iterable[str] | None,
                     digests: Callable[[str, str], str | None] | None = None,
                     ) -> list[Problem]:
    """Steps naming a plugin, handler, connector or workflow the app does not have, or a
    connector of a kind the step cannot use (:func:`connector_mismatch`).

    ``plugins`` maps the app's plugins to their handlers; None skips that check. A plugin
    the app does not have is a warning (it may be added later, or another host of the store
    serves it: the step waits for a host that does); a handler the plugin lacks is an error.
    ``connectors`` maps the app's connectors to their kinds; None skips that check.
    ``digests(plugin, digest)`` says why no host would ever run a step's ``digest`` (a version
    the catalog does not keep and no host serves: an error); None skips that check.
    """
    out = Collect(wf.lines)
    conns = dict(connectors) if connectors is not None else None
    flows = set(workflows) if workflows is not None else None
    for where, items in (("steps", wf.steps), ("on_failure", wf.on_failure)):
        for i, s in enumerate(items):
            path = f"{where}[{i}].uses"
            if s.digest is not None and digests is not None \
                    and (why := digests(s.target, s.digest)):
                out.add(f"{where}[{i}].digest", f"step {s.id!r}: {why}")
            if s.kind == "plugin" and plugins is not None:
                if s.target not in plugins:
                    out.add(path, f"step {s.id!r} uses plugin {s.target!r}, which the app does "
                                  f"not have (plugins: {', '.join(sorted(plugins)) or 'none'}); "
                                  "it may be added later or served by another host of the "
                                  "store: until a host serves it, the step waits queued",
                            warning=True)
                elif s.handler not in set(plugins[s.target]):
                    out.add(path, f"step {s.id!r}: plugin {s.target!r} has no handler "
                                  f"{s.handler!r} (handlers: "
                                  f"{', '.join(plugins[s.target]) or 'none'})")
            elif s.kind == "connector" and conns is not None:
                if s.target not in conns:
                    out.add(path, f"unknown connector {s.target!r} (connectors in the app "
                                  f"config: {', '.join(sorted(conns)) or 'none'})")
                elif why := connector_mismatch(s.id, s.target, conns[s.target], s.handler):
                    out.add(path, why)
            elif s.kind == "workflow" and flows is not None:
                if s.target not in flows:
                    out.add(path, f"unknown workflow {s.target!r}")
                elif s.target == wf.name:
                    out.add(path, "a workflow cannot run itself as a step")
    return out.problems
