"""Which plugin handlers are MCP tools, under which names, with which description and schema.

Nothing is a tool by default. The operator exposes handlers with ``mcp.expose`` in
``omnicore.yaml`` (``PLUGIN/HANDLER`` patterns), in a plugin's sidecar (``HANDLER`` patterns
of that plugin), or from the console (``HANDLER`` patterns kept in the plugin's operator
settings in the database, so every instance serves them: omnicore.plugins.operator); globs
(``greeter/*``, ``*``) are matched with :func:`fnmatchcase`.

A tool is named ``PLUGIN.HANDLER``: MCP tool names allow only ``A-Za-z0-9_.-`` (and a ``/``
breaks clients), plugin names never hold a dot, so the first dot splits the name back. A
handler character outside that set is written ``_uXXXX_`` (its code point in hex, 4 to 6
digits); a handler whose tool name would then collide with another one of the same plugin, or
pass 128 characters, is not served and the log says why.

Each tool's description, title, input and output schemas come from the handler's object in
the plugin's manifest (``{"name", "description", "title", "input_schema", "output_schema",
"destructive", "long_running", "asks_first"}``, specs/abi.md §5, written by the build from the
handler's code); without them the description is the plugin's and the input schema
``{"type": "object"}``. The same objects
make the console's invoke form (omnicore.console.invoke_form): one source for both.

A handler whose manifest object says ``"input": "text"`` reads its whole input as text, not
JSON (markdown-js's ``render``): its tool takes one string argument, ``text``
(:data:`TEXT_SCHEMA`), and the call passes that string to the handler as it is
(:func:`handler_input`), not the JSON of the arguments.

A tool's annotations say what an agent may assume before calling it: ``readOnlyHint`` when
nothing the operator granted the plugin can change anything (only log, config, secrets and
read-only directories), ``openWorldHint`` when it may reach outside the host (``http``, which
holds the connectors), ``destructiveHint`` and ``title`` from the manifest.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from omnicore.errors import ConfigError, InvalidInput, InvalidModule
from omnicore.filestamp import Stamp
from omnicore.filestamp import stamp as file_stamp
from omnicore.plugins.expose import check_expose, unmatched_patterns
from omnicore.plugins.info import PluginInfo
from omnicore.plugins.operator import OperatorSettings, overlay
from omnicore.plugins.sidecar import Sidecar, read_sidecar, sidecar_stat
from omnicore.sandbox import configschema
from omnicore.storage.errors import StorageError

__all__ = ["LISTED_STATES", "READ_ONLY_GRANTS", "TEXT_SCHEMA", "Exposure", "Tool",
           "check_expose", "handler_input", "tool_name", "tools_of", "unmatched_patterns"]

log = logging.getLogger("omnicore.mcp")

#: Plugin states whose exposed handlers appear in ``tools/list``; a call to an exposed handler
#: of a plugin in another state (needs-grant, disabled) still answers with the host's reason.
LISTED_STATES = frozenset({"loaded", "half-open", "circuit-open"})
_ALLOWED = re.compile(r"[A-Za-z0-9_.-]")
_MAX_NAME = 128
_OBJECT: Mapping[str, Any] = {"type": "object"}
#: The input schema of a tool whose handler reads text (``"input": "text"``): MCP arguments
#: are always an object, so the text is its one property.
TEXT_SCHEMA: Mapping[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["text"],
    "properties": {"text": {"type": "string", "description":
                            "The whole input, given to the handler as it is (not JSON)."}}}
#: Grants that change nothing outside the call (``fs`` too when no directory is writable).
READ_ONLY_GRANTS = frozenset({"log", "config", "secrets"})
#: A sidecar's MCP rules: its handler patterns, its resources switch (None: the app's) and
#: its name prefix (None: ``PLUGIN.``).
_Rules = tuple[tuple[str, ...], bool | None, str | None]


def tool_name(plugin: str, handler: str, prefix: str | None = None) -> str:
    """``PLUGIN.HANDLER`` (``PREFIX`` + ``HANDLER`` when the operator set ``mcp.prefix``),
    with each character MCP does not allow as ``_uXXXX_``."""
    safe = "".join(c if _ALLOWED.fullmatch(c) else f"_u{ord(c):04x}_" for c in handler)
    return f"{plugin}." + safe if prefix is None else prefix + safe


@dataclass(frozen=True)
class Tool:
    """One exposed handler as an MCP tool."""

    name: str
    plugin: str
    handler: str
    description: str
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any] | None = None
    title: str | None = None
    read_only: bool = False
    destructive: bool = False
    open_world: bool = False
    #: Every call runs as a durable job (the manifest's ``long_running``; omnicore.mcp.tasks).
    long_running: bool = False
    #: Only a client that can hold a task may call it (``"long_running": "required"``).
    task_required: bool = False
    #: Its questions to the client come before its work (``"asks_first": true``): on
    #: 2026-07-28 they are answered in input_required rounds before the call becomes a task.
    asks_first: bool = False
    #: The handler answers an MCP tool result (``{"content": [...], ...}``), not plain output
    #: (its manifest object says ``"content": true``, specs/abi.md §5).
    content: bool = False
    #: The handler reads its input as text (``"input": "text"``): the tool's one argument
    #: ``text`` is its input (:func:`handler_input`).
    text_input: bool = False


def handler_input(tool: Tool, arguments: Mapping[str, Any] | None) -> bytes:
    """What a call of ``tool`` with ``arguments`` hands its handler: the ``text`` argument
    as UTF-8 for a handler that reads text, else the arguments as JSON. InvalidInput when a
    text tool is not given its one string argument (nothing runs)."""
    if not tool.text_input:
        return json.dumps(arguments or {}, separators=(",", ":")).encode()
    args = dict(arguments or {})
    text = args.pop("text", None)
    if not isinstance(text, str) or args:
        raise InvalidInput(f"tool '{tool.name}' takes one argument, \"text\": the input as a "
                           f"string (got {', '.join(sorted(arguments or {})) or 'none'})",
                           plugin=tool.plugin, handler=tool.handler)
    return text.encode()


def _frozen(value: object) -> object:
    """``value`` (a grant: dicts, lists, scalars) as something ``==`` compares cheaply."""
    if isinstance(value, Mapping):
        return tuple(sorted((str(k), _frozen(v)) for k, v in value.items()))
    if isinstance(value, list | tuple | set | frozenset):
        return tuple(_frozen(v) for v in value)
    return value


def _read_only(granted: Mapping[str, Mapping[str, Any]]) -> bool:
    for name, grant in granted.items():
        if name == "fs":
            if any(isinstance(d, Mapping) and d.get("write") for d in grant.get("dirs") or ()):
                return False
        elif name not in READ_ONLY_GRANTS:
            return False
    return True


@dataclass(frozen=True)
class Where:
    """A plugin's name and file: what its sidecar and operator rules are found by."""

    name: str
    source: str | Path | None


class Exposure:
    """The operator's ``mcp.expose`` rules: the app's, each plugin sidecar's and each
    plugin's operator settings (``operator``; their ``mcp.resources`` wins over the sidecar's).

    Sidecars are read again only when their file changes (one ``stat`` per check), so an
    edited sidecar takes effect at the next list or call without a reload.
    """

    def __init__(self, app_patterns: Iterable[str], resources: bool = False, *,
                 operator: OperatorSettings | None = None) -> None:
        self._app = [tuple(p.split("/", 1)) for p in app_patterns]
        self._resources = resources
        self._operator = operator
        self._sidecars: dict[str, tuple[Stamp, _Rules]] = {}
        #: Each plugin's tools, with what they were made from (see :meth:`tools`).
        self._tools: dict[str, tuple[tuple[object, ...], dict[str, Tool]]] = {}

    def tools(self, info: PluginInfo) -> dict[str, Tool]:
        """Plugin ``info``'s exposed handlers as tools, by tool name; the same dict (do not
        change it) while nothing they are made of changes: the file, the grants and the
        rules that expose them. A list of 1,000 tools is then a lookup, not 1,000 checks."""
        key = (info.sha256, info.source, _frozen(info.granted), self._sidecar(info),
               self._operator_rules(info)[0])
        cached = self._tools.get(info.name)
        if cached is not None and cached[0] == key and info.sha256 is not None:
            return cached[1]
        tools = _tools(info, self)
        self._tools[info.name] = (key, tools)
        return tools

    def exposes(self, info: PluginInfo, handler: str) -> bool:
        """Whether ``handler`` of plugin ``info`` is served as a tool."""
        return self.rule(info, handler) is not None

    def rule(self, info: PluginInfo, handler: str) -> tuple[str, str] | None:
        """Which rule exposes ``handler`` of ``info``: ``("omnicore.yaml", "PLUGIN/HANDLER")``,
        ``("sidecar", "HANDLER")`` or ``("operator", "HANDLER")``; None when it is not
        exposed."""
        for p, h in self._app:
            if fnmatchcase(info.name, p) and fnmatchcase(handler, h):
                return "omnicore.yaml", f"{p}/{h}"
        for h in self._sidecar(info)[0]:
            if fnmatchcase(handler, h):
                return "sidecar", h
        for h in self._operator_rules(info)[0]:
            if fnmatchcase(handler, h):
                return "operator", h
        return None

    def resources(self, info: PluginInfo) -> bool:
        """Whether plugin ``info``'s memories and vectors are served as resources."""
        own = self._operator_rules(info)[1]
        if own is None:
            own = self._sidecar(info)[1]
        return self._resources if own is None else own

    def prefix(self, info: PluginInfo) -> str | None:
        """What plugin ``info``'s tool and prompt names start with (its sidecar's
        ``mcp.prefix``); None: ``PLUGIN.``."""
        return self._sidecar(info)[2]

    def rules_of(self, info: PluginInfo | Where) -> tuple[object, ...]:
        """What plugin ``info``'s tools depend on besides the plugin itself: its sidecar's
        rules and its operator settings' (each as cheap to ask as :meth:`tools` asks)."""
        return self._sidecar(info), self._operator_rules(info)

    def _operator_rules(self, info: PluginInfo | Where) -> _Rules:
        if self._operator is None or not info.source:
            return (), None, None  # like the rest of the operator's settings: plugins from files
        try:
            rules = overlay(Sidecar(), self._operator.doc(info.name), info.name)
        except (ConfigError, StorageError) as exc:
            log.warning("mcp: ignoring the operator's settings of plugin '%s': %s",
                        info.name, exc)
            return (), None, None
        return rules.mcp_expose, rules.mcp_resources, None

    def _sidecar(self, info: PluginInfo | Where) -> _Rules:
        if not info.source:
            return (), None, None
        found = sidecar_stat(info.source)
        if found is None:
            return (), None, None  # none, or two (the host refuses to load such a plugin anyway)
        path, st = found
        stamp = file_stamp(st)
        cached = self._sidecars.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        wasm = Path(info.source)
        rules: _Rules
        try:
            sidecar = read_sidecar(wasm)
            rules = (sidecar.mcp_expose, sidecar.mcp_resources, sidecar.mcp_prefix)
        except (ConfigError, OSError) as exc:
            log.warning("mcp: ignoring the sidecar of plugin '%s': %s", info.name, exc)
            rules = ((), None, None)
        self._sidecars[path] = (stamp, rules)
        return rules


def tools_of(infos: Iterable[PluginInfo], exposure: Exposure, *,
             listed_only: bool = True) -> dict[str, Tool]:
    """Every exposed handler of ``infos`` as a :class:`Tool`, by tool name."""
    out: dict[str, Tool] = {}
    for info in infos:
        if listed_only and info.state not in LISTED_STATES:
            continue
        out.update(exposure.tools(info))
    return out


def _tools(info: PluginInfo, exposure: Exposure) -> dict[str, Tool]:
    declared = _declared(info.manifest)
    read_only = _read_only(info.granted)
    open_world = "http" in info.granted
    prefix = exposure.prefix(info)
    served_otherwise = prompt_and_resource_handlers(info.manifest)
    mine: dict[str, Tool] = {}
    for handler in info.handlers:
        if handler in served_otherwise or not exposure.exposes(info, handler):
            continue
        name = tool_name(info.name, handler, prefix)
        problem = None
        if len(name) > _MAX_NAME:
            problem = f"its tool name would be longer than {_MAX_NAME} characters"
        elif name in mine:
            problem = f"its tool name {name!r} is also that of '{mine[name].handler}'"
        spec = declared.get(handler, {})
        text = spec.get("input") == "text"
        schema = TEXT_SCHEMA if text else spec.get("input_schema", _OBJECT)
        output = spec.get("output_schema")
        if text and "input_schema" in spec:
            problem = problem or ("it reads text (\"input\": \"text\"), so it takes no "
                                  "input_schema")
        problem = problem or _schema_problem(schema, info.name, (info.sha256, handler))
        if output is not None and not problem:
            problem = _schema_problem(output, info.name, (info.sha256, f"{handler}->"))
            problem = problem and problem.replace("input_schema", "output_schema")
        if problem:
            log.warning("mcp: handler '%s' of plugin '%s' is not served: %s",
                        handler, info.name, problem)
            continue
        description = spec.get("description") or info.description or ""
        title = spec.get("title")
        mine[name] = Tool(name, info.name, handler, str(description), schema, output,
                          title=str(title) if title else None, read_only=read_only,
                          destructive=spec.get("destructive") is True and not read_only,
                          open_world=open_world,
                          long_running=spec.get("long_running") in (True, "required"),
                          task_required=spec.get("long_running") == "required",
                          asks_first=spec.get("asks_first") is True,
                          content=spec.get("content") is True, text_input=text)
    return mine


def prompt_and_resource_handlers(manifest: Mapping[str, Any]) -> frozenset[str]:
    """The handlers the manifest's ``prompts`` and ``resources`` name: served as those, never
    as tools (omnicore.mcp.declared)."""
    names = set()
    for key in ("prompts", "resources"):
        entries = manifest.get(key)
        for entry in entries if isinstance(entries, list) else ():
            if isinstance(entry, Mapping) and isinstance(entry.get("handler"), str):
                names.add(entry["handler"])
    return frozenset(names)


def _declared(manifest: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The handler objects of the manifest, by name (plain-name entries declare nothing)."""
    entries = manifest.get("handlers")
    if not isinstance(entries, list):
        return {}
    return {e["name"]: e for e in entries if isinstance(e, dict) and isinstance(e.get("name"), str)}


#: Verdicts on input schemas by (plugin file sha256, handler): checking one costs a
#: millisecond, and the list and every call need it. A new file is a new key.
_checked: dict[tuple[str | None, str], str | None] = {}


def _schema_problem(schema: object, plugin: str, key: tuple[str | None, str]) -> str | None:
    if not isinstance(schema, dict) or schema.get("type") != "object":
        return "its input_schema must be a JSON Schema object with \"type\": \"object\""
    if key[0] is not None and key in _checked:
        return _checked[key]
    try:
        configschema.check(schema, plugin)  # local $refs only: nothing is ever fetched
        problem = None
    except InvalidModule as exc:
        problem = str(exc).replace("config schema", "input_schema")
    if len(_checked) > 10_000:
        _checked.clear()  # files come and go over a long life; stay bounded
    _checked[key] = problem
    return problem


#: Validators of output schemas by (plugin file sha256, handler), built once per file.
_validators: dict[tuple[str | None, str], Any] = {}


def output_problem(tool: Tool, sha256: str | None, value: object) -> str | None:
    """Why ``value`` (a call's structured output; None when it was no JSON object) does not
    match ``tool``'s output schema, in one line; None when it does or there is no schema."""
    if tool.output_schema is None:
        return None
    if value is None:
        return (f"handler '{tool.handler}' of plugin '{tool.plugin}' returned no JSON object, "
                "but its output_schema says it returns one")
    import jsonschema
    import referencing
    from referencing.exceptions import NoSuchResource

    key = (sha256, tool.handler)
    validator = _validators.get(key) if sha256 is not None else None
    if validator is None:
        def nothing(uri: str) -> Any:  # the schema's $refs are local (checked when listed)
            raise NoSuchResource(ref=uri)  # type: ignore[call-arg]

        schema = dict(tool.output_schema)
        cls = jsonschema.validators.validator_for(schema,
                                                  default=jsonschema.Draft202012Validator)
        validator = cls(schema, registry=referencing.Registry(retrieve=nothing))  # type: ignore[call-arg]
        if len(_validators) > 10_000:
            _validators.clear()
        _validators[key] = validator
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = "/".join(str(p) for p in error.absolute_path) or "(root)"
    return (f"handler '{tool.handler}' of plugin '{tool.plugin}' returned output that does not "
            f"match its output_schema at {where}: {error.message[:300]}")
