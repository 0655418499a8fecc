"""The workflows an app knows: files of its ``workflows/`` folder, and any added in code.

Every ``*.yaml``, ``*.yml`` and ``*.json`` directly in the folder (not dot-files) is one
workflow, named by its ``name``. The folder is read at start and then every ``poll_s``
(a changed stamp, :mod:`omnicore.filestamp`, reloads the file; a removed file unloads it). A
file that does not parse or check is listed as ``failed`` under its file name with every
problem; it harms nothing else, and a workflow that was loaded from the same file before
keeps serving until the file is fixed — runs already started stay on the version they were
pinned to either way.
References to plugins, handlers, connectors and other workflows are checked again whenever a
plugin is loaded or unloaded: a step whose plugin the app does not have is a warning (the
workflow loads; the plugin may come), a handler the plugin lacks is an error (it fails).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from omnicore.filestamp import Stamp, stamp
from omnicore.logging import get_logger
from omnicore.workflows.definition import Workflow, parse, read_definition
from omnicore.workflows.errors import DefinitionError, Problem, WorkflowNotFound
from omnicore.workflows.references import check_references

__all__ = ["SUFFIXES", "WorkflowEntries", "WorkflowEntry"]

log = get_logger("omnicore.workflows")

SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True)
class WorkflowEntry:
    """One workflow as the app sees it: ``loaded`` (it runs) or ``failed`` (why)."""

    name: str
    state: Literal["loaded", "failed"]
    source: str
    workflow: Workflow | None = None
    problems: tuple[Problem, ...] = ()
    stale: bool = False          # failed to reload; the previous version still serves
    loaded_at: float = field(default_factory=time.time)
    text: str = field(default="", repr=False)
    #: Findings that do not stop it loading (a step's plugin the app does not have yet).
    warnings: tuple[Problem, ...] = ()

    def as_dict(self) -> dict[str, object]:
        wf = self.workflow
        return {"name": self.name, "state": self.state, "source": self.source,
                "version": wf.version if wf else None,
                "description": wf.description if wf else "",
                "steps": [s.id for s in wf.steps] if wf else [],
                "triggers": [{"name": t.name, "kind": t.kind, "cron": t.cron or None,
                              "timezone": t.timezone if t.kind == "cron" else None,
                              "event": t.topic or None, "webhook": t.path or None}
                             for t in wf.triggers] if wf else [],
                "inputs": dict(wf.inputs) if wf else {},
                "problems": [str(p) for p in self.problems],
                "warnings": [str(p) for p in self.warnings], "stale": self.stale,
                "loaded_at": self.loaded_at}


class WorkflowEntries:
    """Loaded workflows by name. ``refs()`` says what the app has, for reference checks: its
    plugins' handlers and its connectors' kinds."""

    def __init__(self, refs: Callable[[], tuple[Mapping[str, Iterable[str]] | None,
                                                Mapping[str, str] | None]],
                 on_version: Callable[[Workflow], None],
                 digests: Callable[[str, str], str | None] | None = None) -> None:
        self._refs = refs
        self._on_version = on_version
        #: Why no host would run plugin ``name`` at ``digest`` (None: it would): checks the
        #: versions steps ask for (None: not checked).
        self._digests = digests
        self._lock = threading.RLock()
        self._entries: dict[str, WorkflowEntry] = {}
        self._files: dict[Path, tuple[Stamp, str]] = {}   # path -> (its stamp, name)
        self.folder: Path | None = None

    def __iter__(self) -> Iterator[WorkflowEntry]:
        with self._lock:
            return iter(sorted(self._entries.values(), key=lambda e: e.name))

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def entry(self, name: str) -> WorkflowEntry:
        found = self._entries.get(name)
        if found is None:
            raise WorkflowNotFound(f"no workflow {name!r} (workflows: "
                                   f"{', '.join(sorted(self._entries)) or 'none'})")
        return found

    def get(self, name: str) -> Workflow:
        """The loaded workflow ``name``; WorkflowNotFound when absent or failed."""
        entry = self.entry(name)
        if entry.workflow is None:
            raise WorkflowNotFound(f"workflow {name!r} failed to load: "
                                   + "; ".join(str(p) for p in entry.problems))
        return entry.workflow

    def add(self, text: str, source: str = "<code>") -> WorkflowEntry:
        """Add (or replace) a workflow from its text; DefinitionError lists every problem."""
        wf = parse(text, source)
        problems = self.check(wf, extra={wf.name})
        errors = [p for p in problems if p.severity == "error"]
        if errors:
            raise DefinitionError(source, errors)
        entry = WorkflowEntry(wf.name, "loaded", source, wf, text=text,
                              warnings=tuple(problems))
        with self._lock:
            self._entries[wf.name] = entry
        self._on_version(wf)
        return entry

    def check(self, wf: Workflow, extra: set[str] = frozenset(),  # type: ignore[assignment]
              plugins: Mapping[str, Iterable[str]] | None = None) -> list[Problem]:
        """``wf``'s references checked against the app: errors and warnings.

        ``plugins`` (name → handlers) stands for the host's when it is not running (the CLI
        reads the plugins folder); else the running host's plugins are used, if any.
        """
        live, connectors = self._refs()
        plugins = live if plugins is None else plugins
        names = {n for n, e in self._entries.items() if e.workflow is not None} | set(extra)
        return check_references(wf, plugins=plugins, connectors=connectors, workflows=names,
                                digests=self._digests)

    # -- the folder --

    def scan(self, folder: Path | None = None) -> bool:
        """Read the folder again; True when anything changed."""
        if folder is not None:
            self.folder = folder
        if self.folder is None:
            return False
        try:
            found = {p: p.stat() for p in self.folder.iterdir()
                     if p.suffix in SUFFIXES and not p.name.startswith(".") and p.is_file()}
        except FileNotFoundError:
            found = {}
        except OSError as exc:
            log.error("cannot read the workflows folder %s: %s", self.folder, exc)
            return False
        changed = False
        with self._lock:
            for path in [p for p in self._files if p not in found]:
                _, name = self._files.pop(path)
                if self._entries.get(name) and self._entries[name].source == str(path):
                    del self._entries[name]
                    log.info("workflow %s unloaded (%s removed)", name, path.name)
                changed = True
            for path, st in sorted(found.items()):
                seen = self._files.get(path)
                if seen is not None and seen[0] == stamp(st):
                    continue
                changed = True
                self._load_file(path, stamp(st))
            if changed:
                self.recheck()
        return changed

    def _load_file(self, path: Path, seen: Stamp) -> None:
        previous = self._files.get(path)
        old_name = previous[1] if previous else None
        try:
            text = read_definition(path, path.name)
            wf = parse(text, path.name)
        except OSError as exc:
            self._failed(path, old_name, [Problem("", f"cannot read: {exc}")], seen)
            return
        except DefinitionError as exc:
            self._failed(path, old_name, exc.problems, seen)
            return
        holder = self._entries.get(wf.name)
        if holder is not None and holder.source != str(path) and holder.workflow is not None:
            self._failed(path, old_name, [Problem("name", f"workflow {wf.name!r} is already "
                                                          f"defined by {holder.source}")],
                         seen)
            return
        if old_name and old_name != wf.name and self._entries.get(old_name, None) and \
                self._entries[old_name].source == str(path):
            del self._entries[old_name]
        self._entries[wf.name] = WorkflowEntry(wf.name, "loaded", str(path), wf, text=text)
        self._files[path] = (seen, wf.name)
        self._on_version(wf)
        log.info("workflow %s loaded from %s (version %s)", wf.name, path.name, wf.version[:12])

    def _failed(self, path: Path, old_name: str | None, problems: list[Problem],
                seen: Stamp) -> None:
        old = self._entries.get(old_name) if old_name else None
        if old is not None and old.workflow is not None and old.source == str(path):
            # The last good version keeps serving; the entry says why the new one did not load.
            self._entries[old_name] = WorkflowEntry(  # type: ignore[index]
                old.name, "loaded", old.source, old.workflow, tuple(problems), True,
                old.loaded_at, old.text)
            name = old.name
        else:
            name = path.stem
            holder = self._entries.get(name)
            if holder is not None and holder.workflow is not None and \
                    holder.source != str(path):
                name = path.name
            self._entries[name] = WorkflowEntry(name, "failed", str(path),
                                                problems=tuple(problems))
        self._files[path] = (seen, name)
        log.error("workflow file %s: %s", path.name, "; ".join(str(p) for p in problems))

    def recheck(self, plugins: Mapping[str, Iterable[str]] | None = None) -> None:
        """Check every loaded workflow's references again (plugins came or went);
        ``plugins`` as in :meth:`check`."""
        with self._lock:
            for name, entry in list(self._entries.items()):
                wf = entry.workflow
                if wf is None and entry.text:
                    try:
                        wf = parse(entry.text, Path(entry.source).name)
                    except DefinitionError:
                        continue
                if wf is None:
                    continue
                found = self.check(wf, plugins=plugins)
                errors = tuple(p for p in found if p.severity == "error")
                warnings = tuple(p for p in found if p.severity == "warning")
                if errors and not entry.stale:
                    self._entries[name] = WorkflowEntry(name, "failed", entry.source, None,
                                                        errors, text=entry.text,
                                                        warnings=warnings)
                elif not errors and entry.state == "failed":
                    self._entries[name] = WorkflowEntry(name, "loaded", entry.source, wf,
                                                        text=entry.text, warnings=warnings)
                    self._on_version(wf)
                elif entry.warnings != warnings:
                    self._entries[name] = replace(entry, warnings=warnings)
