"""The OpenAPI 3.1 document of ``/api/v1``, served at ``/api/v1/openapi.json``.

Written as one table (method, path, summary, role, parameters, body, answer) beside the
routes (one module per feature of :mod:`omnicore.console`); ``tests/console/test_server.py``
checks that every ``/api/v1`` route of the app is documented and every documented operation
exists. The request bodies written here are also the ones the console takes:
:func:`omnicore.console.bodies.json_body` refuses a field its operation's body does not name
(:func:`request_schema`).
"""

from __future__ import annotations

from typing import Any

from omnicore import __version__

__all__ = ["document", "request_schema", "resolve"]

Obj = dict[str, Any]


def _ref(name: str) -> Obj:
    return {"$ref": f"#/components/schemas/{name}"}


def _page(item: Obj) -> Obj:
    return {"type": "object", "required": ["items", "total", "limit", "offset"],
            "properties": {"items": {"type": "array", "items": item},
                           "total": {"type": "integer"}, "limit": {"type": "integer"},
                           "offset": {"type": "integer"}}}


ANY_OBJECT: Obj = {"type": "object", "additionalProperties": True}
SCHEMAS: Obj = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["status", "type", "message"],
        "properties": {"status": {"type": "integer"}, "type": {"type": "string"},
                       "message": {"type": "string"}, "plugin": {"type": "string"},
                       "handler": {"type": "string"}}}}},
    "Plugin": {"type": "object", "required": ["name", "state"], "properties": {
        "name": {"type": "string"},
        "state": {"enum": ["loaded", "needs-grant", "failed", "disabled", "circuit-open",
                           "half-open", "compiling"]},
        "version": {"type": ["string", "null"]}, "language": {"type": ["string", "null"]},
        "handlers": {"type": "array", "items": {"type": "string"}},
        "requested": {"type": "array", "items": {"type": "string"}},
        "granted": ANY_OBJECT, "missing": {"type": "array", "items": {"type": "string"}},
        "limits": {"type": ["object", "null"]}, "config": ANY_OBJECT,
        "stats": {"type": ["object", "null"]}, "breaker": {"type": "string"},
        "last_error": {"type": ["string", "null"]}}},
    "InvokeRequest": {"type": "object", "required": ["handler"], "additionalProperties": False,
                      "properties": {
        "handler": {"type": "string"}, "input": {"type": "string"},
        "encoding": {"enum": ["text", "base64"]}}},
    "InvokeResult": {"type": "object", "required": ["output", "encoding", "duration_ms"],
                     "properties": {"output": {"type": "string"},
                                    "encoding": {"enum": ["text", "base64"]},
                                    "duration_ms": {"type": "number"}}},
    "JobRequest": {"type": "object", "required": ["plugin", "handler"],
                   "additionalProperties": False, "properties": {
        "plugin": {"type": "string", "minLength": 1}, "handler": {"type": "string",
                                                                  "minLength": 1},
        "payload": {"description": "a string (text, or base64 with encoding=base64); any "
                                   "other JSON value is sent as its JSON text"},
        "encoding": {"enum": ["text", "base64"]},
        "delay_s": {"type": "number", "minimum": 0, "maximum": 366 * 86400},
        "digest": {"type": "string", "description": "the plugin version the job must run on "
                   "(sha256:<hex>, a version the catalog keeps or a host serves): only a host "
                   "serving that module claims it; a single job only, not in a batch"}}},
    "JobQueued": {"type": "object", "required": ["id", "plugin", "handler", "created"],
                  "properties": {"id": {"type": "integer"}, "plugin": {"type": "string"},
                                 "handler": {"type": "string"},
                                 "digest": {"type": "string"},
                                 "created": {"type": "boolean", "description":
                                             "false: the Idempotency-Key's job from before"}}},
    "AuditEntry": {"type": "object", "required": ["id", "at", "user", "verb", "target"],
                   "properties": {
        "id": {"type": "integer"}, "at": {"type": "number"}, "time": {"type": "string"},
        "user": {"type": "string"}, "verb": {"type": "string"},
        "plugin": {"type": "string"}, "subject": {"type": "string"},
        "target": {"type": ["string", "null"]}, "before": {}, "after": {},
        "origin": {"type": ["string", "null"], "description": "an address, or cli"}}},
    "Secret": {"type": "object", "required": ["name", "exposed_to"], "properties": {
        "name": {"type": "string"},
        "exposed_to": {"type": "array", "items": {"type": "string"},
                       "description": "plugins whose secrets grant exposes it"}}},
    "SecretValue": {"type": "object", "required": ["value"], "additionalProperties": False,
                    "properties": {
        "value": {"type": "string", "description": "never returned by any endpoint"},
        "encoding": {"enum": ["text", "base64"]}}},
    "VectorCollection": {"type": "object", "required": ["plugin", "name", "dim", "count"],
                         "properties": {
        "plugin": {"type": "string"}, "name": {"type": "string"}, "dim": {"type": "integer"},
        "metric": {"enum": ["cosine", "l2", "ip"]}, "count": {"type": "integer"},
        "bytes": {"type": "integer"}, "created_at": {"type": "number"},
        "index": {"enum": ["exact", "hnsw", "not loaded"]}}},
    "MemorySummary": {"type": "object", "required": ["plugin", "total", "tiers"], "properties": {
        "plugin": {"type": "string"}, "total": {"type": "integer"},
        "tiers": {"type": "object", "description": "working, short_term, long_term: "
                  "{count, cap}", "additionalProperties": {
                      "type": "object", "properties": {"count": {"type": "integer"},
                                                       "cap": {"type": "integer"}}}}}},
    "Memory": {"type": "object", "required": ["id", "tier", "text", "score"], "properties": {
        "id": {"type": "integer"}, "tier": {"enum": [0, 1, 2]}, "text": {"type": "string"},
        "metadata": ANY_OBJECT, "score": {"type": "number"}, "created_at": {"type": "number"}}},
    "Workflow": {"type": "object", "required": ["name", "state"], "properties": {
        "name": {"type": "string"}, "state": {"enum": ["loaded", "failed"]},
        "version": {"type": ["string", "null"]}, "source": {"type": ["string", "null"]},
        "steps": {"type": "array", "items": {"type": "string"}},
        "triggers": {"type": "array", "items": ANY_OBJECT}, "inputs": ANY_OBJECT}},
    "WorkflowRun": {"type": "object", "required": ["id", "workflow", "state"], "properties": {
        "id": {"type": "integer"}, "workflow": {"type": "string"},
        "state": {"enum": ["queued", "running", "succeeded", "failed", "cancelled",
                           "skipped"]},
        "version": {"type": "string"}, "started_by": {"type": ["string", "null"]},
        "steps": {"type": "array", "items": ANY_OBJECT},
        "history": {"type": "array", "items": ANY_OBJECT}}},
    "CatalogVersion": {"type": "object", "required": ["name", "number", "digest", "size"],
                       "properties": {
        "id": {"type": "integer"}, "name": {"type": "string"}, "number": {"type": "integer"},
        "digest": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
        "size": {"type": "integer"}, "sidecar": ANY_OBJECT,
        "requested_grants": {"description": "the sidecar's grants: requests the operator "
                                            "decides on, never a grant"},
        "published_by": {"type": ["string", "null"]}, "published_at": {"type": "number"},
        "source": {"type": ["string", "null"], "description": "the OCI reference (by digest) "
                                                              "it was pulled from"},
        "signatures": {"type": "integer", "description": "how many signatures are kept with "
                                                         "it (each host checks them)"},
        "signed_by": {"type": "array", "items": {"type": "string"},
                      "description": "the signers' key fingerprints, as they said"},
        "created": {"type": "boolean", "description": "false: that module, sidecar and "
                                                      "signatures were in force already"}}},
    "CatalogEntry": {"type": "object", "required": ["name", "version"], "properties": {
        "name": {"type": "string"},
        "version": {"oneOf": [_ref("CatalogVersion"), {"type": "null"}]},
        "updated_at": {"type": "number"}, "updated_by": {"type": ["string", "null"]},
        "pinned": {"type": "boolean", "description": "the version in force is pinned: a "
                   "publish adds a version without putting it in force"},
        "pinned_at": {"type": ["number", "null"]}, "pinned_by": {"type": ["string", "null"]},
        "versions": {"type": "array", "items": _ref("CatalogVersion")},
        "rollout": {"type": ["object", "null"], "description": "digest, serving (hosts), "
                    "hosts (each host's digest, state, error), converged"}}},
    "Entry": {"type": "object", "properties": {
        "id": {"type": "integer"}, "time": {"type": "number"},
        "kind": {"enum": ["log", "host", "event"]}, "level": {"type": "string"},
        "message": {"type": "string"}, "plugin": {"type": ["string", "null"]}}},
}

_PAGING = [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                        "maximum": 500}},
           {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}}]
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_PLUGIN = {"name": "plugin", "in": "path", "required": True, "schema": {"type": "string"}}
_SECRET = {"name": "name", "in": "path", "required": True, "schema": {
    "type": "string", "pattern": "^[A-Za-z0-9_.-]{1,128}$"}}
_RUN = {"name": "run_id", "in": "path", "required": True,
        "schema": {"type": "integer", "minimum": 1}}
_LEVEL = {"name": "level", "in": "query",
          "schema": {"enum": ["trace", "debug", "info", "warn", "error"]}}
_HANDLER = {"name": "handler", "in": "path", "required": True, "schema": {"type": "string"}}
_MCP_TOOLS = {"type": "object", "required": ["items"], "properties": {"items": {
    "type": "array", "items": {"type": "object", "properties": {
        "handler": {"type": "string"}, "tool": {"type": "string"},
        "exposed": {"type": "boolean"},
        "exposed_by": {"enum": ["omnicore.yaml", "sidecar", "operator", None]},
        "rule": {"type": ["string", "null"]}}}}}}
_FEED = [{"name": "plugin", "in": "query", "schema": {"type": "string"}}, _LEVEL,
         {"name": "kind", "in": "query", "schema": {"enum": ["log", "host", "event"]}}]


def _body(schema: Obj, *, required: bool = True) -> Obj:
    return {"required": required, "content": {"application/json": {"schema": _closed(schema)}}}


def _closed(schema: Obj) -> Obj:
    """``schema`` saying what the console does: an object that lists its properties takes no
    other key (unless it says otherwise), at every level."""
    out = dict(schema)
    if "properties" in out:
        out.setdefault("additionalProperties", False)
        out["properties"] = {k: _closed(v) for k, v in out["properties"].items()}
    if isinstance(out.get("items"), dict):
        out["items"] = _closed(out["items"])
    if "oneOf" in out:
        out["oneOf"] = [_closed(b) for b in out["oneOf"]]
    return out


def _obj(key: str, schema: Obj) -> Obj:
    return {"type": "object", "required": [key], "properties": {key: schema}}


# (method, path, summary, role, parameters, request body, 2xx status, answer schema)
OPERATIONS: list[tuple[str, str, str, str, list[Obj], Obj | None, int, Obj | None]] = [
    ("get", "/info", "Runtime id, uptime, environment, plugin counts", "viewer", [], None, 200,
     ANY_OBJECT),
    ("get", "/health", "Health of every component", "viewer", [], None, 200, ANY_OBJECT),
    ("get", "/settings", "Effective config with sources (secrets masked)", "viewer", _PAGING,
     None, 200, _page(ANY_OBJECT)),
    ("get", "/me", "Who is asking", "viewer", [], None, 200, ANY_OBJECT),
    ("get", "/plugins", "List plugins", "viewer", [*_PAGING, {"name": "state", "in": "query",
     "schema": SCHEMAS["Plugin"]["properties"]["state"]}], None, 200, _page(_ref("Plugin"))),
    ("post", "/plugins", "Upload a .wasm (validated before it is written)", "admin",
     [{"name": "filename", "in": "query", "required": True, "schema": {"type": "string"}},
      {"name": "replace", "in": "query", "schema": {"type": "boolean"}}],
     {"required": True, "content": {"application/octet-stream": {"schema": {
         "type": "string", "format": "binary"}}}}, 201, _ref("Plugin")),
    ("get", "/plugins/{name}", "One plugin", "viewer", [_NAME], None, 200, _ref("Plugin")),
    ("delete", "/plugins/{name}", "Delete the plugin's file and sidecar", "admin", [_NAME],
     None, 204, None),
    ("post", "/plugins/{name}/reload", "Reload from its file", "admin", [_NAME], None, 200,
     _ref("Plugin")),
    ("put", "/plugins/{name}/enabled", "Enable or disable (sidecar)", "admin", [_NAME],
     _body(_obj("enabled", {"type": "boolean"})), 200, _ref("Plugin")),
    ("put", "/plugins/{name}/config", "Replace its config (checked against the manifest's "
     "schema; sidecar)", "admin", [_NAME], _body(_obj("config", ANY_OBJECT)), 200,
     _ref("Plugin")),
    ("put", "/plugins/{name}/limits", "Replace its limits (sidecar)", "admin", [_NAME],
     _body(_obj("limits", ANY_OBJECT)), 200, _ref("Plugin")),
    ("get", "/plugins/{name}/settings", "The operator's settings of the plugin (grants, "
     "config, limits, enabled, mcp; {} when none)", "viewer", [_NAME], None, 200, ANY_OBJECT),
    ("delete", "/plugins/{name}/settings", "Drop the operator's settings of the plugin, or "
     "only one key; its sidecar and the app config apply again", "admin",
     [_NAME, {"name": "key", "in": "query", "schema": {
         "enum": ["grants", "config", "limits", "enabled", "mcp"]}}], None, 200, ANY_OBJECT),
    ("put", "/plugins/{name}/grants/{capability}", "Grant a capability with options (without "
     "'options': those omnicore.yaml and the sidecar grant it with, else {})",
     "admin", [_NAME, {"name": "capability", "in": "path", "required": True,
                       "schema": {"type": "string"}}],
     _body({"type": "object", "properties": {"options": ANY_OBJECT}}), 200, _ref("Plugin")),
    ("delete", "/plugins/{name}/grants/{capability}", "Revoke a capability (sidecar)", "admin",
     [_NAME, {"name": "capability", "in": "path", "required": True,
              "schema": {"type": "string"}}], None, 200, _ref("Plugin")),
    ("post", "/plugins/{name}/invoke", "Call a handler once", "admin", [_NAME],
     _body(_ref("InvokeRequest")), 200, _ref("InvokeResult")),
    ("get", "/plugins/{name}/mcp", "Its handlers as MCP tools, and which are exposed",
     "viewer", [_NAME], None, 200, _MCP_TOOLS),
    ("put", "/plugins/{name}/mcp/{handler}", "Expose a handler as an MCP tool (sidecar)",
     "admin", [_NAME, _HANDLER], None, 200, _MCP_TOOLS),
    ("delete", "/plugins/{name}/mcp/{handler}", "Stop serving a handler as an MCP tool "
     "(sidecar)", "admin", [_NAME, _HANDLER], None, 200, _MCP_TOOLS),
    ("get", "/plugins/{name}/charts", "Its charts as data: calls, latency, instance memory, "
     "fuel (each line's points in the chart's unit, null where no sample)", "viewer",
     [_NAME, {"name": "range", "in": "query", "schema": {"enum": ["15m", "1h", "24h"]}}],
     None, 200, ANY_OBJECT),
    ("get", "/plugins/{name}/logs", "The plugin's log lines, newest first", "viewer",
     [_NAME, _LEVEL, *_PAGING], None, 200, _page(ANY_OBJECT)),
    ("get", "/events", "Recent log lines and events, newest first", "viewer",
     [*_FEED, *_PAGING], None, 200, _page(_ref("Entry"))),
    ("get", "/live", "One page's live figures (Server-Sent Events: 'figures' frames of what "
     "changed), with the log feed when feed=1", "viewer",
     [{"name": n, "in": "query", "schema": {"type": "string"}, "description": d}
      for n, d in (("scope", "host, plugins or plugin:NAME"),
                   ("version", "tasks or events: a key that changes with the page's rows"),
                   ("feed", "1: also the log entries (plugin, level, kind filters)"))],
     None, 200, None),
    ("get", "/stream", "Live log lines and events (Server-Sent Events)", "viewer",
     [*_FEED, {"name": "backlog", "in": "query", "description": "recent entries sent first "
               "(default 100; 0 for new entries only)",
               "schema": {"type": "integer", "minimum": 0, "maximum": 1000}}], None,
     200, None),
    *[op for word, noun, note in (("jobs", "job", ""),
                                  ("tasks", "task", " (the old path of /jobs)"))
      for op in (
          ("get", f"/{word}", f"Durable jobs, newest first{note}", "viewer",
           [*_PAGING, {"name": "plugin", "in": "query", "schema": {"type": "string"}},
            {"name": "state", "in": "query",
             "schema": {"enum": ["queued", "running", "succeeded", "dead", "cancelled"]}}],
           None, 200, _page(ANY_OBJECT)),
          ("post", f"/{word}", f"Queue a job (recorded in the audit log); with an "
           f"Idempotency-Key header, the same key within a day answers the job it made "
           f"(200, created false); or a batch {{jobs: [...]}} of up to 1000 in one "
           f"transaction (answer {{ids}}){note}", "admin",
           [{"name": "Idempotency-Key", "in": "header", "schema": {
               "type": "string", "minLength": 1, "maxLength": 255}}],
           _body({"oneOf": [_ref("JobRequest"), {
               "type": "object", "required": ["jobs"], "properties": {"jobs": {
                   "type": "array", "minItems": 1, "maxItems": 1000,
                   "items": _ref("JobRequest")}}}]}), 201,
           {"oneOf": [_ref("JobQueued"), {"type": "object", "required": ["ids"], "properties": {
               "ids": {"type": "array", "items": {"type": "integer"}},
               "created": {"type": "boolean"}}}]}),
          ("post", f"/{word}/{{{noun}_id}}/retry", f"Queue a dead or cancelled job again{note}",
           "admin", [{"name": f"{noun}_id", "in": "path", "required": True,
                      "schema": {"type": "integer"}}], None, 200, ANY_OBJECT),
          ("post", f"/{word}/{{{noun}_id}}/cancel", f"Cancel a queued job{note}", "admin",
           [{"name": f"{noun}_id", "in": "path", "required": True,
             "schema": {"type": "integer"}}], None, 200, ANY_OBJECT))],
    ("get", "/schedules", "Plugins' schedules with their next and last run and whether each is "
     "paused", "viewer", _PAGING, None, 200, _page(ANY_OBJECT)),
    *[("post", f"/schedules/{{plugin}}/{{name}}/{action}", summary, "admin",
       [_PLUGIN, {"name": "name", "in": "path", "required": True,
                  "schema": {"type": "string"}}], None, 200, ANY_OBJECT)
      for action, summary in (("run", "Queue a run of a schedule now"),
                              ("pause", "Pause a schedule (on every host)"),
                              ("resume", "Resume a paused schedule from now"))],
    ("get", "/subscriptions", "Plugins' event subscriptions: topic, inbox depth, drops",
     "viewer", _PAGING, None, 200, _page(ANY_OBJECT)),
    ("post", "/events", "Publish a test event (recorded in the audit log)", "admin", [],
     _body({"type": "object", "required": ["topic"], "properties": {
         "topic": {"type": "string", "maxLength": 200}, "data": {}}}), 202,
     {"type": "object", "properties": {"id": {"type": "integer"},
                                       "topic": {"type": "string"}}}),
    ("get", "/kv", "Plugins that have keys", "viewer", _PAGING, None, 200, _page(ANY_OBJECT)),
    ("get", "/kv/{plugin}", "One plugin's keys", "viewer",
     [{"name": "plugin", "in": "path", "required": True, "schema": {"type": "string"}},
      {"name": "prefix", "in": "query", "schema": {"type": "string"}}, *_PAGING],
     None, 200, _page(ANY_OBJECT)),
    ("get", "/kv/{plugin}/{key}", "One value", "viewer",
     [{"name": "plugin", "in": "path", "required": True, "schema": {"type": "string"}},
      {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}],
     None, 200, ANY_OBJECT),
    ("delete", "/kv/{plugin}/{key}", "Delete one key", "admin",
     [{"name": "plugin", "in": "path", "required": True, "schema": {"type": "string"}},
      {"name": "key", "in": "path", "required": True, "schema": {"type": "string"}}],
     None, 204, None),
    ("get", "/users", "Users", "admin", _PAGING, None, 200, _page(ANY_OBJECT)),
    ("post", "/users", "Add a user", "admin",
     [], _body({"type": "object", "required": ["name", "password"], "properties": {
         "name": {"type": "string"}, "password": {"type": "string"},
         "role": {"enum": ["admin", "viewer"]}}}), 201, ANY_OBJECT),
    ("delete", "/users/{user}", "Delete a user", "admin",
     [{"name": "user", "in": "path", "required": True, "schema": {"type": "string"}}], None,
     204, None),
    ("get", "/tokens", "API tokens (an admin sees all)", "viewer", _PAGING, None, 200,
     _page(ANY_OBJECT)),
    ("post", "/tokens", "Create an API token for yourself (the secret is shown once)", "admin",
     [], _body({"type": "object", "properties": {"label": {"type": "string"}}}), 201,
     ANY_OBJECT),
    ("delete", "/tokens/{token_id}", "Revoke a token", "admin",
     [{"name": "token_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
     None, 204, None),
    ("get", "/secrets", "Secret names and the plugins each is exposed to (never a value)",
     "viewer", _PAGING, None, 200, _page(_ref("Secret"))),
    ("put", "/secrets/{name}", "Set or replace a secret (encrypted at rest; the value is "
     "never shown again)", "admin", [_SECRET], _body(_ref("SecretValue")), 200,
     {"type": "object", "required": ["name", "created"], "properties": {
         "name": {"type": "string"}, "created": {"type": "boolean"},
         "exposed_to": {"type": "array", "items": {"type": "string"}}}}),
    ("delete", "/secrets/{name}", "Delete a secret", "admin", [_SECRET], None, 204, None),
    ("get", "/connectors", "Connectors (HTTP and databases): kind, host, database, the "
     "secret's name, pool in use/idle, last error, plugins granted it; never a credential",
     "viewer", _PAGING, None, 200, _page(ANY_OBJECT)),
    ("get", "/bridges", "Brokers bridged to the event bus: kind, broker host, state and the "
     "reason it is down, flows, lag (inbound unsettled, outbound held) and counters; never a "
     "credential", "viewer", _PAGING, None, 200, _page(ANY_OBJECT)),
    ("get", "/vectors", "Plugins' vector collections: counts, dimension, index state",
     "viewer", [{"name": "plugin", "in": "query", "schema": {"type": "string"}}, *_PAGING],
     None, 200, _page(_ref("VectorCollection"))),
    ("delete", "/vectors/{plugin}/{collection}", "Drop a whole collection", "admin",
     [_PLUGIN, {"name": "collection", "in": "path", "required": True,
                "schema": {"type": "string"}}], None, 204, None),
    ("get", "/instances", "The hosts sharing this app's storage (the instance table), the "
     "digest each serves of each plugin, and whether the plugin catalog's rollouts converged",
     "viewer", [], None, 200, {"type": "object", "required": ["items"], "properties": {
         "items": {"type": "array", "items": {"type": "object", "required": [
             "runtime_id", "heartbeat_at", "jobs_held", "version", "draining"], "properties": {
             "runtime_id": {"type": "string"}, "hostname": {"type": "string"},
             "pid": {"type": "integer"}, "console_url": {"type": ["string", "null"]},
             "version": {"type": "string"}, "started_at": {"type": "number"},
             "heartbeat_at": {"type": "number"}, "jobs_held": {"type": "integer"},
             "draining": {"type": "boolean"}, "this": {"type": "boolean"},
             "plugins": {"type": "object", "description": "name -> {digest: what it serves "
                         "(null: nothing), state, origin (catalog or file), wanted: the "
                         "catalog's digest, error: why that one does not serve here}"}}}},
         "lost": {"type": "array", "items": ANY_OBJECT},
         "catalog": {"type": "array", "items": {"type": "object", "properties": {
             "name": {"type": "string"}, "digest": {"type": "string"},
             "number": {"type": "integer"}, "pinned": {"type": "boolean"},
             "serving": {"type": "integer"},
             "hosts": {"type": "array", "items": ANY_OBJECT},
             "converged": {"type": "boolean"}}}},
         "converged": {"type": "boolean", "description": "every host serves every catalog "
                       "plugin's version in force"}}}),
    ("post", "/instances/{runtime_id}/drain", "Drain a host: it stops claiming work, finishes "
     "what it runs and exits", "admin",
     [{"name": "runtime_id", "in": "path", "required": True, "schema": {"type": "string"}}],
     None, 202, {"type": "object", "properties": {"runtime_id": {"type": "string"},
                                                  "draining": {"type": "boolean"}}}),
    ("get", "/catalog", "The plugin catalog: each published plugin's version in force and "
     "where it stands on every host (serving, converged)", "viewer", [], None, 200,
     {"type": "object", "required": ["items", "converged"], "properties": {
         "items": {"type": "array", "items": _ref("CatalogEntry")},
         "converged": {"type": "boolean"}}}),
    ("put", "/catalog/{name}", "Publish a plugin to the catalog (every host loads it within "
     "seconds; a JSON body with the module in base64 and its sidecar, or the raw module; "
     "201 a new version, 200 when that module and sidecar were in force already)", "admin",
     [_NAME, {"name": "digest", "in": "query", "schema": {"type": "string"},
              "description": "a raw body's sha256:<hex>, checked before it is stored"}],
     {"required": True, "content": {
         "application/json": {"schema": _closed({
             "type": "object", "properties": {
                 "module": {"type": "string", "contentEncoding": "base64",
                            "description": "the module (or 'source')"},
                 "source": {"type": "string", "description": "instead of 'module': an OCI "
                            "reference (oci://REGISTRY/REPO:TAG or @sha256:...) this host pulls"
                            " with its registry.* and plugins.trust"},
                 "signatures": {"type": "array", "items": ANY_OBJECT, "description":
                                "the module's signatures as omnicore.oci.signature_to_json "
                                "writes them ({kind: cosign-blob, signature: base64})"},
                 "sidecar": {"type": "object", "additionalProperties": True,
                             "description": "grants (requested only), config, limits, "
                                            "enabled, mcp"},
                 "digest": {"type": "string", "description": "sha256:<hex> of the module, "
                            "checked before it is stored"}}})},
         "application/wasm": {"schema": {"type": "string", "format": "binary"}},
         "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
     201, _ref("CatalogVersion")),
    ("get", "/catalog/{name}", "A plugin's version in force and the versions kept (newest "
     "first)", "viewer", [_NAME], None, 200, _ref("CatalogEntry")),
    ("post", "/catalog/{name}/rollback", "Put an earlier version in force: 'to' names it (a "
     "digest, a prefix of one, or a number); without it, the one before", "admin", [_NAME],
     _body({"type": "object", "properties": {"to": {"type": ["string", "integer"]}}},
           required=False), 200, _ref("CatalogEntry")),
    ("put", "/catalog/{name}/pin", "Pin a plugin to one of its versions ('digest': a digest, "
     "a prefix of 6 or more hex digits, or vN): every host serves it whatever is published "
     "later, rollback and removal are refused (409), until unpinned; 404 names a digest "
     "the plugin has no version of", "admin", [_NAME],
     _body({"type": "object", "required": ["digest"],
            "properties": {"digest": {"type": "string"}}}), 200, _ref("CatalogEntry")),
    ("delete", "/catalog/{name}/pin", "Unpin a plugin: its newest version goes in force on "
     "every host", "admin", [_NAME], None, 200, _ref("CatalogEntry")),
    ("delete", "/catalog/{name}", "Take a plugin out of the catalog: every host falls back to "
     "its folder's file of that name, or unloads it (its versions are kept)", "admin",
     [_NAME], None, 204, None),
    ("get", "/routes", "The plugin routes this host serves (serve.routes and sidecars' routes; "
     "specs/http-routes.md): each one's plugin, handler, path, methods, auth, limits, source "
     "and counters", "viewer", [], None, 200,
     _obj("routes", {"type": "array", "items": {"type": "object"}})),
    ("get", "/memory", "Plugins' memories per tier, with the tier caps", "viewer", _PAGING,
     None, 200, _page(_ref("MemorySummary"))),
    ("get", "/memory/{plugin}/recall", "Recall a plugin's memories as it would (read only: "
     "not counted as a recall)", "viewer",
     [_PLUGIN, {"name": "query", "in": "query", "schema": {"type": "string",
                                                           "maxLength": 1000}},
      {"name": "tier", "in": "query", "schema": {"type": "array", "items": {"enum": [0, 1, 2]}},
       "style": "form", "explode": True},
      {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                  "maximum": 100}}],
     None, 200, {"type": "object", "required": ["items"], "properties": {
         "items": {"type": "array", "items": _ref("Memory")}, "query": {"type": "string"},
         "tiers": {"type": "array", "items": {"type": "integer"}}}}),
    ("delete", "/memory/{plugin}/{memory_id}", "Forget one memory", "admin",
     [_PLUGIN, {"name": "memory_id", "in": "path", "required": True,
                "schema": {"type": "integer", "minimum": 1}}], None, 204, None),
    ("get", "/workflows", "Workflow definitions, loaded or failed (with every problem)",
     "viewer", _PAGING, None, 200, _page(_ref("Workflow"))),
    ("get", "/workflows/{name}", "One workflow, its definition and webhook URLs", "viewer",
     [_NAME], None, 200, _ref("Workflow")),
    ("post", "/workflows/{name}/runs", "Start a run (inputs checked against its schema: 422 "
     "names the field)", "admin", [_NAME],
     _body({"type": "object", "properties": {"inputs": ANY_OBJECT}}), 201,
     _ref("WorkflowRun")),
    ("get", "/workflow-runs", "Workflow runs, newest first", "viewer",
     [{"name": "workflow", "in": "query", "schema": {"type": "string"}},
      {"name": "state", "in": "query",
       "schema": SCHEMAS["WorkflowRun"]["properties"]["state"]}, *_PAGING],
     None, 200, _page(_ref("WorkflowRun"))),
    ("get", "/workflow-runs/{run_id}", "A run with its steps and history", "viewer", [_RUN],
     None, 200, _ref("WorkflowRun")),
    ("post", "/workflow-runs/{run_id}/approve", "Approve or reject a waiting approval step "
     "(who and when are recorded)", "admin", [_RUN],
     _body({"type": "object", "required": ["step"], "properties": {
         "step": {"type": "string"}, "approve": {"type": "boolean"},
         "comment": {"type": "string", "maxLength": 2000}}}), 200, _ref("WorkflowRun")),
    ("post", "/workflow-runs/{run_id}/cancel", "Cancel a run that has not ended", "admin",
     [_RUN], None, 200, _ref("WorkflowRun")),
    ("post", "/workflow-runs/{run_id}/restart", "Restart a failed or cancelled run from the "
     "failed step, keeping earlier outputs", "admin", [_RUN],
     _body({"type": "object", "properties": {"latest": {
         "type": "boolean", "description": "on the latest version, not the pinned one"}}},
           required=False),
     200, _ref("WorkflowRun")),
    ("get", "/workflows/{name}/file", "A workflow's file: text, data, digest and the "
     "validator's problems (each with its step)", "viewer", [_NAME], None, 200, ANY_OBJECT),
    ("put", "/workflows/{name}/file", "Save a draft into the file (comments kept; 409 when "
     "the file changed since it was read; 422 with the problems)", "admin", [_NAME],
     _body({"type": "object", "required": ["document"], "properties": {
         "document": ANY_OBJECT, "digest": {"type": ["string", "null"]}}}), 200, ANY_OBJECT),
    ("post", "/workflows/{name}/file/validate", "Check a draft with the validator of "
     "`omnicore workflows validate`", "viewer", [_NAME],
     _body({"type": "object", "required": ["document"], "properties": {
         "document": ANY_OBJECT}}), 200, ANY_OBJECT),
    ("get", "/workflows/{name}/file/history", "The file's kept versions, newest first",
     "viewer", [_NAME], None, 200, ANY_OBJECT),
    ("post", "/workflows/{name}/file/restore", "Write a kept version back (409 when the file "
     "changed since it was read)", "admin", [_NAME],
     _body({"type": "object", "required": ["id"], "properties": {
         "id": {"type": "string"}, "digest": {"type": ["string", "null"]}}}), 200, ANY_OBJECT),
    ("get", "/workflow-palette", "What a workflow step can use: plugins, their handlers with "
     "input schemas, connectors, workflows", "viewer", [], None, 200, ANY_OBJECT),
    ("get", "/audit", "The audit log, newest first: who changed what, when, from where "
     "(?format=csv|json: a download of up to 10,000)", "viewer",
     [{"name": n, "in": "query", "schema": {"type": t}, "description": d} for n, t, d in (
         ("user", "string", "who made the change"),
         ("verb", "string", "a verb or its start, e.g. grant."),
         ("plugin", "string", "the plugin or one of its parts"),
         ("since", "number", "unix time"), ("before_id", "integer", "the page after (next)"),
         ("limit", "integer", "1..10000 (default 100)"),
         ("format", "string", "csv or json: a download"))],
     None, 200, {"type": "object", "required": ["items", "next"], "properties": {
         "items": {"type": "array", "items": _ref("AuditEntry")},
         "limit": {"type": "integer"}, "next": {"type": ["string", "null"]}}}),
    ("get", "/openapi.json", "This document", "none", [], None, 200, ANY_OBJECT),
]


def resolve(schema: Obj) -> Obj:
    """``schema``, or the component schema its ``$ref`` names."""
    ref = schema.get("$ref")
    return SCHEMAS[ref.rsplit("/", 1)[-1]] if isinstance(ref, str) else schema


def request_schema(method: str, path: str) -> Obj | None:
    """The JSON schema of the body of ``METHOD path`` (the route's path, e.g.
    ``/api/v1/jobs/{job_id}``); None when the operation documents no JSON body."""
    return _REQUESTS.get((method.lower(), path))


def document() -> Obj:
    paths: Obj = {}
    errors = {str(code): {"description": text, "content": {"application/json": {
        "schema": _ref("Error")}}} for code, text in (
        (400, "bad request (or a Host name the console does not answer to)"),
        (401, "not signed in"), (403, "not allowed (role, CSRF, or a change from another site)"),
        (404, "not found"), (408, "the body did not arrive in time"),
        (409, "conflict with the current state"), (413, "too large"),
        (422, "invalid input, or the plugin refused or failed"), (429, "slow down"),
        (507, "the disk is full; nothing was changed"))}
    for method, path, summary, role, params, body, status, answer in OPERATIONS:
        op: Obj = {"summary": summary, "parameters": params,
                   "description": "No sign-in needed." if role == "none"
                   else f"Needs role: {role}.",
                   "operationId": f"{method}_{path.strip('/').replace('/', '_')}"
                   .replace("{", "").replace("}", ""),
                   "responses": {str(status): {"description": "ok"}, **errors}}
        if answer is not None:
            op["responses"][str(status)]["content"] = {"application/json": {"schema": answer}}
        elif path in ("/stream", "/live"):
            op["responses"]["200"]["content"] = {"text/event-stream": {
                "schema": {"type": "string"}}}
        if body is not None:
            op["requestBody"] = body
        if role == "none":
            op["security"] = []
        paths.setdefault(f"/api/v1{path}", {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "omnicore console API", "version": __version__,
                 "description": "Manage a running omnicore host. Authenticate with "
                                "'Authorization: Bearer <token>' (tokens: the Users page or "
                                "POST /api/v1/tokens)."},
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "session": {"type": "apiKey", "in": "cookie", "name": "omnicore_session"}}},
        "security": [{"bearer": []}, {"session": []}],
    }


_REQUESTS: dict[tuple[str, str], Obj] = {
    (method, f"/api/v1{path}"): body["content"]["application/json"]["schema"]
    for method, path, _summary, _role, _params, body, _status, _answer in OPERATIONS
    if body is not None and "application/json" in body["content"]}
