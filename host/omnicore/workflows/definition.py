"""``omniflow/v1`` definitions: parsed from YAML or JSON, checked, compiled.

:func:`parse` collects every problem of a document — JSON Schema violations
(``workflow.schema.json``, also in specs/), unknown or cyclic ``needs``, bad durations, cron
expressions or time zones, expressions that do not compile — each with its path in the
document and its line, and raises one :class:`DefinitionError` holding all of them. What it
returns is a :class:`Workflow` whose ``version`` is the sha256 of its canonical JSON: the same
content is the same version wherever it was loaded from, and a run is pinned to it.

References to plugins, handlers, connectors and other workflows are checked separately
(:func:`omnicore.workflows.references.check_references`) against what the app has loaded,
since those come and go.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import jsonschema
import yaml
from croniter import croniter

from omnicore import yamlfile
from omnicore.config.durations import parse_duration
from omnicore.storage.catalog_rows import version_digest as plugin_digest
from omnicore.workflows.errors import DefinitionError, ExpressionError, Problem
from omnicore.workflows.expressions import Compiled, compile_condition, compile_value

__all__ = ["FORMAT", "Collect", "Concurrency", "Retry", "Step", "Trigger", "Wait", "Workflow",
           "parse", "parse_duration", "plugin_digest", "read_definition", "schema"]

FORMAT = "omniflow/v1"
MAX_DOCUMENT_BYTES = 1 << 20
DEFAULT_TIMEOUT_S = 300.0


@cache
def schema() -> dict[str, Any]:
    """The JSON Schema of ``omniflow/v1`` (shipped with the package; specs/ has a copy)."""
    text = resources.files("omnicore.workflows").joinpath("workflow.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@dataclass(frozen=True, slots=True)
class Retry:
    """Attempts of one step, with the wait before each retry."""

    max_attempts: int = 1
    backoff: Literal["exponential", "fixed"] = "exponential"
    initial: float = 1.0
    max: float = 300.0
    jitter: bool = True

    def delay(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1`` (full jitter when ``jitter``)."""
        base = self.initial * (2 ** (attempt - 1) if self.backoff == "exponential" else 1)
        cap = min(self.max, base)
        return random.uniform(0, cap) if self.jitter else cap


@dataclass(frozen=True, slots=True)
class Wait:
    kind: Literal["approval", "sleep", "event"]
    seconds: float | None = None        # sleep; or the event wait's timeout
    topic: str | None = None
    filter: Compiled | None = None
    message: str = ""


@dataclass(frozen=True)
class Step:
    id: str
    kind: Literal["plugin", "connector", "workflow", "wait"]
    target: str = ""                    # plugin, connector or workflow name
    handler: str = ""
    method: str = "GET"
    path: Compiled = field(default_factory=lambda: Compiled(None))
    query: Compiled = field(default_factory=lambda: Compiled(None))
    headers: Compiled = field(default_factory=lambda: Compiled(None))
    with_: Compiled = field(default_factory=lambda: Compiled(None))
    needs: tuple[str, ...] = ()
    if_: Compiled | None = None
    for_each: Compiled | None = None
    parallelism: int = 1
    retry: Retry = Retry()
    timeout: float = DEFAULT_TIMEOUT_S
    wait: Wait | None = None
    continue_on_error: bool = False
    on_failure: bool = False            # a step of the on_failure list
    #: The plugin version a plugin step asks for (``sha256:<64 hex>``): only a host serving
    #: that module runs it. None: whatever version each host serves.
    digest: str | None = None

    @property
    def pin(self) -> str | None:
        """``plugin@sha256:<hex>`` when the step asks for a version (its rows carry it)."""
        return f"{self.target}@{self.digest}" if self.digest else None

    @property
    def uses(self) -> str:
        if self.kind == "plugin" or (self.kind == "connector" and self.handler):
            return f"{self.kind}:{self.target}/{self.handler}"
        return "wait" if self.kind == "wait" else f"{self.kind}:{self.target}"


@dataclass(frozen=True, slots=True)
class Trigger:
    name: str
    kind: Literal["cron", "event", "webhook"]
    cron: str = ""
    timezone: str = "UTC"
    topic: str = ""
    filter: Compiled | None = None
    path: str = ""
    secret: str = ""
    inputs: Compiled = field(default_factory=lambda: Compiled({}))


@dataclass(frozen=True, slots=True)
class Concurrency:
    key: Compiled
    limit: int
    on_conflict: Literal["queue", "skip", "cancel_running"]


@dataclass(frozen=True)
class Workflow:
    """A checked, compiled definition; ``document`` is its canonical data."""

    name: str
    version: str
    document: Mapping[str, Any]
    description: str = ""
    inputs: Mapping[str, Any] = field(default_factory=dict)
    triggers: tuple[Trigger, ...] = ()
    concurrency: Concurrency | None = None
    steps: tuple[Step, ...] = ()
    on_failure: tuple[Step, ...] = ()
    outputs: Compiled = field(default_factory=lambda: Compiled({}))
    lines: Mapping[str, int] = field(default_factory=dict, repr=False)

    @property
    def canonical(self) -> str:
        return _canonical(self.document)

    def step(self, step_id: str) -> Step:
        for s in (*self.steps, *self.on_failure):
            if s.id == step_id:
                return s
        raise KeyError(step_id)


def _canonical(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _path(parts: Iterable[Any]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _lines(text: str) -> dict[str, int]:
    """``path → line`` for every node of a YAML (or JSON) document; {} if it cannot say."""
    try:
        root = yamlfile.compose(text)
    except yaml.YAMLError:
        return {}
    found: dict[str, int] = {}

    def walk(node: yaml.Node, parts: tuple[Any, ...]) -> None:
        found.setdefault(_path(parts), node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = (*parts, key.value)
                found[_path(sub)] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, (*parts, i))
    if root is not None:
        walk(root, ())
    return found


class Collect:
    """The problems of one document, each with its path and the line it is on."""

    def __init__(self, lines: Mapping[str, int]) -> None:
        self.lines = lines
        self.problems: list[Problem] = []

    def line(self, path: str) -> int | None:
        while path:
            if path in self.lines:
                return self.lines[path]
            path = re.sub(r"(\.[^.\[]*|\[\d+\])$", "", path)
        return self.lines.get("")

    def add(self, path: str, message: str, *, warning: bool = False) -> None:
        self.problems.append(Problem(path, message, self.line(path),
                                     "warning" if warning else "error"))


def read_definition(path: Path, source: str | None = None) -> str:
    """The text of a definition file; DefinitionError if it is too large (said before it is
    read, so a huge file costs nothing) or not UTF-8. OSError when it cannot be read."""
    source = source or str(path)
    with path.open("rb") as f:
        raw = f.read(MAX_DOCUMENT_BYTES + 1)
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise DefinitionError(source, [Problem("", f"the file is larger than "
                                                   f"{MAX_DOCUMENT_BYTES} bytes")])
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DefinitionError(source, [Problem("", f"not a text file (not UTF-8 at byte "
                                                   f"{exc.start})")]) from None


def load_document(text: str, source: str) -> tuple[Any, dict[str, int]]:
    """The data and line map of a YAML/JSON text; DefinitionError when it does not parse."""
    if len(text.encode()) > MAX_DOCUMENT_BYTES:
        raise DefinitionError(source, [Problem("", f"the file is larger than "
                                                   f"{MAX_DOCUMENT_BYTES} bytes")])
    try:
        if source.endswith(".json"):
            doc = json.loads(text)
        else:
            doc = yamlfile.load(text, source)
    except json.JSONDecodeError as exc:
        raise DefinitionError(source, [Problem("", f"not valid JSON: {exc.msg}",
                                               exc.lineno)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DefinitionError(source, [Problem("", f"not valid YAML: "
                                                   f"{getattr(exc, 'problem', None) or exc}",
                                               mark.line + 1 if mark else None)]) from None
    return doc, _lines(text)


def parse(text: str, source: str = "<workflow>") -> Workflow:
    """Parse, check and compile one definition; DefinitionError lists every problem."""
    doc, lines = load_document(text, source)
    return from_document(doc, source, lines)


def from_document(doc: Any, source: str = "<workflow>",
                  lines: Mapping[str, int] | None = None) -> Workflow:
    """A :class:`Workflow` from already parsed data (a stored version, an API body)."""
    out = Collect(lines or {})
    validator = jsonschema.Draft202012Validator(schema())
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path))):
        out.add(_path(err.absolute_path), _schema_message(err))
    if out.problems or not isinstance(doc, dict):
        raise DefinitionError(source, out.problems or [Problem("", "not an object")])
    wf = _build(doc, out)
    if out.problems:
        raise DefinitionError(source, out.problems)
    assert wf is not None
    return wf


def _schema_message(err: jsonschema.ValidationError) -> str:
    where = [str(p) for p in err.absolute_path]
    if err.validator == "pattern" and where == ["name"]:
        return (f"{err.instance!r}: a workflow name is 1-64 lowercase letters, digits, '-' "
                "and '_', starting with a letter or digit")
    if err.validator == "oneOf" and err.context and not (
            len(where) == 2 and where[0] in ("steps", "on_failure")):
        # Say what the alternative the document chose wanted (the one whose first required
        # key it has: cron, event, webhook...), not "is not valid under any of".
        chosen = [c for c in err.context if isinstance(err.instance, dict) and any(
            (branch.get("required") or [None])[0] in err.instance
            for i, branch in enumerate(err.validator_value)
            if isinstance(branch, dict) and c.relative_schema_path and
            c.relative_schema_path[0] == i)]
        best = jsonschema.exceptions.best_match(chosen or err.context)
        sub = _path(best.absolute_path)
        return f"{best.message}" + (f" (at {sub})" if sub and best.path else "")
    if err.validator == "additionalProperties":
        return str(err.message).replace("Additional properties are not allowed",
                                        "unknown key(s) not allowed")
    if err.validator == "oneOf" and len(where) == 2 and where[0] in ("steps", "on_failure"):
        return "a step needs exactly one of 'uses' or 'wait'"
    if err.validator == "pattern" and where[-1:] == ["uses"]:
        return (f"{err.instance!r}: write plugin:NAME/HANDLER, connector:NAME or "
                "workflow:NAME")
    if err.validator == "anyOf" and any(w in ("timeout", "sleep", "initial", "max")
                                        for w in where[-1:]):
        return f"{err.instance!r} is not a duration like 30, '500ms', '30s', '5m', '2h', '1d'"
    return str(err.message)


def _duration(out: Collect, raw: Any, path: str, default: float) -> float:
    if raw is None:
        return default
    try:
        return parse_duration(raw)
    except ValueError as exc:
        out.add(path, str(exc))
        return default


def _retry(out: Collect, raw: Mapping[str, Any] | None, path: str, base: Retry) -> Retry:
    if not raw:
        return base
    initial = _duration(out, raw.get("initial"), f"{path}.initial", base.initial)
    cap = _duration(out, raw.get("max"), f"{path}.max", base.max)
    return Retry(int(raw.get("max_attempts", base.max_attempts)),
                 raw.get("backoff", base.backoff), initial, cap,
                 bool(raw.get("jitter", base.jitter)))


def _compiled(out: Collect, value: Any, path: str, *, condition: bool = False) -> Compiled:
    errors: list[ExpressionError] = []
    compiled = (compile_condition if condition else compile_value)(value, path, errors)
    for exc in errors:
        where = exc.where or path
        out.add(where, str(exc).removeprefix(f"{where}: "))
    return Compiled(None) if errors else compiled


def _build(doc: dict[str, Any], out: Collect) -> Workflow | None:
    defaults = doc.get("defaults") or {}
    timeout = _duration(out, defaults.get("timeout"), "defaults.timeout", DEFAULT_TIMEOUT_S)
    retry = _retry(out, defaults.get("retry"), "defaults.retry", Retry())
    if doc.get("inputs") is not None:
        try:
            jsonschema.Draft202012Validator.check_schema(doc["inputs"])
        except jsonschema.SchemaError as exc:
            out.add(_path(["inputs", *exc.absolute_path]), f"not a valid JSON Schema: "
                                                            f"{exc.message}")
    steps = tuple(_step(out, raw, f"steps[{i}]", timeout, retry, False)
                  for i, raw in enumerate(doc["steps"]))
    failure = tuple(_step(out, raw, f"on_failure[{i}]", timeout, retry, True)
                    for i, raw in enumerate(doc.get("on_failure") or []))
    main_ids = [s.id for s in steps]
    seen: dict[str, str] = {}
    for i, s in enumerate((*steps, *failure)):
        where = f"steps[{i}]" if i < len(steps) else f"on_failure[{i - len(steps)}]"
        if s.id in seen:
            out.add(f"{where}.id", f"step id {s.id!r} is already used by {seen[s.id]}")
        seen.setdefault(s.id, where)
    resolved_steps = _needs(out, steps, "steps", set())
    resolved_failure = _needs(out, failure, "on_failure", set(main_ids))
    triggers = tuple(_trigger(out, raw, f"triggers[{i}]")
                     for i, raw in enumerate(doc.get("triggers") or []))
    names = [t.name for t in triggers]
    for i, name in enumerate(names):
        if names.index(name) != i:
            out.add(f"triggers[{i}].name", f"trigger name {name!r} is used twice")
    concurrency = None
    if doc.get("concurrency"):
        raw = doc["concurrency"]
        key = _compiled(out, raw.get("key", ""), "concurrency.key")
        bad = key.roots - {"inputs", "trigger"}
        if bad:
            out.add("concurrency.key", f"the key is known before any step runs: it may use "
                                       f"inputs and trigger, not {', '.join(sorted(bad))}")
        concurrency = Concurrency(key, int(raw["limit"]), raw.get("on_conflict", "queue"))
    outputs = _compiled(out, doc.get("outputs") or {}, "outputs")
    for ref in outputs.steps - set(seen):
        out.add("outputs", f"steps.{ref} is not a step of this workflow")
    if outputs.secrets:
        out.add("outputs", "secrets may only be used in a connector step's headers")
    if out.problems:
        return None
    return Workflow(doc["name"], hashlib.sha256(_canonical(doc).encode()).hexdigest(), doc,
                    doc.get("description", ""), doc.get("inputs") or {}, triggers, concurrency,
                    resolved_steps, resolved_failure, outputs, dict(out.lines))


def _step(out: Collect, raw: dict[str, Any], path: str, timeout: float, retry: Retry,
          on_failure: bool) -> Step:
    sid = raw["id"]
    uses = raw.get("uses")
    kind: Literal["plugin", "connector", "workflow", "wait"] = "wait"
    target = handler = ""
    if uses:
        prefix, _, rest = uses.partition(":")
        kind = prefix
        target, _, handler = rest.partition("/")
    http_keys = [k for k in ("method", "path", "query", "headers") if k in raw]
    # connector:NAME/query and /execute run a statement on a database connector instead.
    statement = kind == "connector" and handler in ("query", "execute")
    if kind == "connector" and not statement and "path" not in raw:
        out.add(f"{path}.path", "a connector step needs a path (and a method; GET by default)")
    if statement and not isinstance(raw.get("with"), dict):
        out.add(f"{path}.with", "a statement step needs with: {sql: ..., params: [...]}")
    if (kind != "connector" or statement) and http_keys:
        out.add(f"{path}.{http_keys[0]}",
                f"{http_keys[0]!r} belongs to HTTP connector steps only")
    digest = None
    if "digest" in raw:
        try:
            digest = plugin_digest(raw["digest"])
        except ValueError as exc:
            out.add(f"{path}.digest", str(exc))
        if kind != "plugin":
            out.add(f"{path}.digest", "'digest' asks for a plugin version: it belongs to "
                                      "plugin steps (uses: plugin:NAME/HANDLER) only")
            digest = None
    if "parallelism" in raw and "for_each" not in raw:
        out.add(f"{path}.parallelism", "parallelism only applies with for_each")
    wait = None
    if "wait" in raw:
        wait = _wait(out, raw["wait"], f"{path}.wait")
        if "with" in raw or "for_each" in raw:
            out.add(path, "a wait step takes no 'with' or 'for_each'")
    compiled = {key: _compiled(out, raw.get(key), f"{path}.{key}")
                for key in ("with", "path", "query", "headers")}
    cond = _compiled(out, raw["if"], f"{path}.if", condition=True) if "if" in raw else None
    each = (_compiled(out, raw["for_each"], f"{path}.for_each", condition=True)
            if "for_each" in raw else None)
    for key, c in (*compiled.items(), ("if", cond), ("for_each", each)):
        if c is None:
            continue
        if c.secrets and key != "headers":
            out.add(f"{path}.{key}", "secrets may only be used in a connector step's headers "
                                     "(they are resolved when the request is sent, and never "
                                     "recorded)")
        if "item" in c.roots and each is None and key != "for_each":
            out.add(f"{path}.{key}", "'item' exists only in a step with for_each")
    refs: set[str] = set()
    for c in (*compiled.values(), cond, each):
        if c is not None:
            refs |= c.steps
    refs.discard(sid)
    step = Step(sid, kind, target, handler, raw.get("method", "GET"), compiled["path"],
                compiled["query"], compiled["headers"], compiled["with"],
                tuple(dict.fromkeys([*raw.get("needs", []), *sorted(refs)])), cond, each,
                int(raw.get("parallelism", 1)),
                _retry(out, raw.get("retry"), f"{path}.retry", retry),
                _duration(out, raw.get("timeout"), f"{path}.timeout", timeout), wait,
                bool(raw.get("continue_on_error", False)), on_failure, digest)
    return step


def _wait(out: Collect, raw: Any, path: str) -> Wait:
    if raw == "approval":
        return Wait("approval")
    if "approval" in raw:
        return Wait("approval", message=str((raw["approval"] or {}).get("message", "")))
    if "sleep" in raw:
        return Wait("sleep", _duration(out, raw["sleep"], f"{path}.sleep", 1.0))
    filt = _compiled(out, raw["filter"], f"{path}.filter", condition=True) \
        if "filter" in raw else None
    seconds = _duration(out, raw["timeout"], f"{path}.timeout", 0) if "timeout" in raw else None
    return Wait("event", seconds, raw["event"], filt)


def _trigger(out: Collect, raw: dict[str, Any], path: str) -> Trigger:
    inputs = _compiled(out, raw.get("inputs") or {}, f"{path}.inputs")
    if inputs.roots - {"trigger"}:
        out.add(f"{path}.inputs", "a trigger's inputs may only use 'trigger'")
    if "cron" in raw:
        tz = raw.get("timezone", "UTC")
        try:
            ZoneInfo(str(tz))
        except (ZoneInfoNotFoundError, ValueError):
            out.add(f"{path}.timezone", f"unknown time zone {tz!r}")
        if not croniter.is_valid(raw["cron"]):
            out.add(f"{path}.cron", f"{raw['cron']!r} is not a cron expression (five fields: "
                                    "minute hour day month weekday)")
        return Trigger(raw.get("name") or f"cron-{path}", "cron", raw["cron"], str(tz),
                       inputs=inputs)
    if "event" in raw:
        filt = _compiled(out, raw["filter"], f"{path}.filter", condition=True) \
            if "filter" in raw else None
        return Trigger(raw.get("name") or f"event-{path}", "event", topic=raw["event"],
                       filter=filt, inputs=inputs)
    return Trigger(raw.get("name") or f"webhook-{path}", "webhook", path=raw["webhook"],
                   secret=raw["secret"], inputs=inputs)


def _needs(out: Collect, steps: tuple[Step, ...], where: str,
           outside: set[str]) -> tuple[Step, ...]:
    """Check ``needs`` (unknown ids, cycles); references to ``outside`` are read-only."""
    ids = {s.id: i for i, s in enumerate(steps)}
    fixed = []
    for i, s in enumerate(steps):
        needs = []
        for n in s.needs:
            if n in ids:
                needs.append(n)
            elif n not in outside:
                out.add(f"{where}[{i}].needs", f"unknown step {n!r} (steps: "
                                               f"{', '.join(ids) or 'none'})")
        fixed.append(_replace(s, needs=tuple(needs)))
    state: dict[str, int] = {}

    def visit(sid: str, trail: list[str]) -> None:
        if state.get(sid) == 2:
            return
        if state.get(sid) == 1:
            cycle = [*trail[trail.index(sid):], sid]
            out.add(f"{where}[{ids[sid]}].needs", f"a cycle in needs: {' -> '.join(cycle)}")
            return
        state[sid] = 1
        for n in fixed[ids[sid]].needs:
            visit(n, [*trail, sid])
        state[sid] = 2
    for s in fixed:
        visit(s.id, [])
    return tuple(fixed)


def _replace(step: Step, **changes: Any) -> Step:
    from dataclasses import replace
    return replace(step, **changes)
