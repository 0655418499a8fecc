"""One verdict on a definition text: what ``omnicore workflows validate`` prints and what the
console's editor shows on its nodes — the same function for both.

:func:`validate` parses and checks the text (:func:`~omnicore.workflows.definition.parse`),
then its references against the app (:meth:`WorkflowEntries.check`) and each plugin step's
``with`` against its handler's ``input_schema`` (:func:`check_inputs`: a required input that
is missing, or an input the schema does not name). Every problem is tied to the step it
belongs to (:func:`step_of`), so an editor can mark the node.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from omnicore.workflows.definition import Workflow, load_document, parse
from omnicore.workflows.entries import WorkflowEntries
from omnicore.workflows.errors import DefinitionError, Problem

__all__ = ["Schemas", "Verdict", "check_inputs", "document_of", "known_inputs",
           "manifest_schemas", "step_of", "validate"]

#: plugin name → handler name → the handler's ``input_schema`` (from its manifest).
Schemas = Mapping[str, Mapping[str, Any]]
_STEP = re.compile(r"^(steps|on_failure)\[(\d+)\]")


@dataclass(frozen=True)
class Verdict:
    """The workflow (None when it does not parse) and every problem, errors and warnings."""

    workflow: Workflow | None
    problems: tuple[Problem, ...]

    @property
    def ok(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def as_dict(self, document: Any) -> dict[str, Any]:
        return {"ok": self.ok, "version": self.workflow.version if self.workflow else None,
                "problems": [{"path": p.path, "message": p.message, "line": p.line,
                              "severity": p.severity, "step": step_of(document, p.path),
                              "text": str(p)} for p in self.problems]}


def step_of(document: Any, path: str) -> str | None:
    """The id of the step ``path`` (``steps[2].with.name``) is in, if it is in one."""
    match = _STEP.match(path)
    if match is None or not isinstance(document, dict):
        return None
    items = document.get(match[1])
    index = int(match[2])
    if isinstance(items, list) and index < len(items) and isinstance(items[index], dict):
        sid = items[index].get("id")
        return sid if isinstance(sid, str) else None
    return None


#: Keywords under which an object schema can accept a property its ``properties`` do not
#: name: with any of them, which names are accepted is not known from ``properties`` alone.
_OPEN = ("patternProperties", "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
         "dependentSchemas", "$ref", "$dynamicRef", "$recursiveRef")


def known_inputs(schema: Mapping[str, Any]) -> frozenset[str] | None:
    """Every input an object ``schema`` accepts, when its ``properties`` say it all; None when
    they do not (no or empty ``properties``, or a keyword that can accept others).

    ``additionalProperties: false`` closes the schema; absent, it is treated as closed too:
    handlers ignore inputs they do not know (specs/abi.md §2.7), so a name the schema does not
    list is a typo no run would ever show. ``additionalProperties: true`` or a schema (a map
    of anything, TypeScript's ``[key: string]: T``) accepts any name, and so does a schema
    composed of others (``allOf``, ``$ref``, ...): nothing is reported for those."""
    props = schema.get("properties")
    if not isinstance(props, Mapping) or not props:
        return None
    if any(key in schema for key in _OPEN) \
            or schema.get("additionalProperties", False) is not False \
            or schema.get("unevaluatedProperties", False) is not False:
        return None
    return frozenset(str(name) for name in props)


def check_inputs(wf: Workflow, schemas: Schemas) -> list[Problem]:
    """Plugin steps whose ``with`` lacks an input their handler's schema requires, or gives
    one the schema does not name (:func:`known_inputs`).

    A ``with`` given as one expression is decided when the step runs, so it is not checked."""
    found: list[Problem] = []
    for where, items in (("steps", wf.steps), ("on_failure", wf.on_failure)):
        for i, step in enumerate(items):
            schema = (schemas.get(step.target) or {}).get(step.handler) \
                if step.kind == "plugin" else None
            if not isinstance(schema, Mapping):
                continue
            given = wf.document.get(where, [])[i].get("with")
            if given is not None and not isinstance(given, Mapping):
                continue
            required = schema.get("required") or []
            for key in required if isinstance(required, list) else []:
                if key not in (given or {}):
                    found.append(Problem(f"{where}[{i}].with", f"step {step.id!r}: handler "
                                         f"{step.target}/{step.handler} requires input "
                                         f"{key!r}", wf.lines.get(f"{where}[{i}]")))
            known = known_inputs(schema)
            if known is None:
                continue
            for key in given or {}:
                if str(key) in known:
                    continue
                near = difflib.get_close_matches(str(key), sorted(known), n=1)
                hint = f"did you mean {near[0]!r}?" if near else \
                    f"it takes {', '.join(repr(k) for k in sorted(known))}"
                path = f"{where}[{i}].with.{key}"
                found.append(Problem(path, f"step {step.id!r}: handler {step.target}/"
                                     f"{step.handler} has no input {str(key)!r} ({hint})",
                                     wf.lines.get(path) or wf.lines.get(f"{where}[{i}]")))
    return found


def manifest_schemas(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """handler → ``input_schema`` of a plugin's manifest (handlers without one left out)."""
    return {h["name"]: h["input_schema"] for h in manifest.get("handlers") or []
            if isinstance(h, Mapping) and isinstance(h.get("name"), str)
            and isinstance(h.get("input_schema"), Mapping)}


def validate(text: str, source: str, entries: WorkflowEntries | None, *,
             plugins: Mapping[str, Iterable[str]] | None = None,
             schemas: Schemas | None = None) -> Verdict:
    """Every problem of definition ``text`` (named ``source``: its suffix picks YAML or JSON)
    for this app (``entries``; None checks the text alone): ``plugins`` and ``schemas`` stand
    for the app's when it is not running."""
    try:
        wf = parse(text, source)
    except DefinitionError as exc:
        return Verdict(None, tuple(exc.problems))
    found = entries.check(wf, {wf.name}, plugins) if entries is not None else []
    if schemas:
        found += check_inputs(wf, schemas)
    return Verdict(wf, tuple(found))


def document_of(text: str, source: str) -> Any:
    """The data of ``text`` for :func:`step_of`, or None when it does not parse."""
    try:
        return load_document(text, source)[0]
    except DefinitionError:
        return None
