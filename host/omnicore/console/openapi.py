"""The OpenAPI 3.1 document of ``/api/v1``, served at ``/api/v1/openapi.json``.

Written as one table (method, path, summary, role, parameters, body, answer) beside the
routes in :mod:`omnicore.console.api`; ``tests/console/test_openapi.py`` checks that every
route is documented and every documented operation exists.
"""

from __future__ import annotations

from typing import Any

from omnicore import __version__

__all__ = ["document"]

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
                           "half-open"]},
        "version": {"type": ["string", "null"]}, "language": {"type": ["string", "null"]},
        "handlers": {"type": "array", "items": {"type": "string"}},
        "requested": {"type": "array", "items": {"type": "string"}},
        "granted": ANY_OBJECT, "missing": {"type": "array", "items": {"type": "string"}},
        "limits": {"type": ["object", "null"]}, "config": ANY_OBJECT,
        "stats": {"type": ["object", "null"]}, "breaker": {"type": "string"},
        "last_error": {"type": ["string", "null"]}}},
    "InvokeRequest": {"type": "object", "required": ["handler"], "properties": {
        "handler": {"type": "string"}, "input": {"type": "string"},
        "encoding": {"enum": ["text", "base64"]}}},
    "InvokeResult": {"type": "object", "required": ["output", "encoding", "duration_ms"],
                     "properties": {"output": {"type": "string"},
                                    "encoding": {"enum": ["text", "base64"]},
                                    "duration_ms": {"type": "number"}}},
    "Entry": {"type": "object", "properties": {
        "id": {"type": "integer"}, "time": {"type": "number"},
        "kind": {"enum": ["log", "host", "event"]}, "level": {"type": "string"},
        "message": {"type": "string"}, "plugin": {"type": ["string", "null"]}}},
}

_PAGING = [{"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                        "maximum": 500}},
           {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}}]
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
_LEVEL = {"name": "level", "in": "query",
          "schema": {"enum": ["trace", "debug", "info", "warn", "error"]}}
_FEED = [{"name": "plugin", "in": "query", "schema": {"type": "string"}}, _LEVEL,
         {"name": "kind", "in": "query", "schema": {"enum": ["log", "host", "event"]}}]


def _body(schema: Obj) -> Obj:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


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
    ("put", "/plugins/{name}/grants/{capability}", "Grant a capability with options (sidecar)",
     "admin", [_NAME, {"name": "capability", "in": "path", "required": True,
                       "schema": {"type": "string"}}],
     _body({"type": "object", "properties": {"options": ANY_OBJECT}}), 200, _ref("Plugin")),
    ("delete", "/plugins/{name}/grants/{capability}", "Revoke a capability (sidecar)", "admin",
     [_NAME, {"name": "capability", "in": "path", "required": True,
              "schema": {"type": "string"}}], None, 200, _ref("Plugin")),
    ("post", "/plugins/{name}/invoke", "Call a handler once", "admin", [_NAME],
     _body(_ref("InvokeRequest")), 200, _ref("InvokeResult")),
    ("get", "/plugins/{name}/logs", "The plugin's log lines, newest first", "viewer",
     [_NAME, _LEVEL, *_PAGING], None, 200, _page(ANY_OBJECT)),
    ("get", "/events", "Recent log lines and events, newest first", "viewer",
     [*_FEED, *_PAGING], None, 200, _page(_ref("Entry"))),
    ("get", "/stream", "Live log lines and events (Server-Sent Events)", "viewer",
     [*_FEED, {"name": "backlog", "in": "query", "description": "recent entries sent first "
               "(default 100; 0 for new entries only)",
               "schema": {"type": "integer", "minimum": 0, "maximum": 1000}}], None,
     200, None),
    ("get", "/tasks", "Durable tasks, newest first", "viewer",
     [*_PAGING, {"name": "plugin", "in": "query", "schema": {"type": "string"}},
      {"name": "state", "in": "query",
       "schema": {"enum": ["queued", "running", "succeeded", "dead", "cancelled"]}}],
     None, 200, _page(ANY_OBJECT)),
    ("post", "/tasks/{task_id}/retry", "Queue a dead or cancelled task again", "admin",
     [{"name": "task_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
     None, 200, ANY_OBJECT),
    ("post", "/tasks/{task_id}/cancel", "Cancel a queued task", "admin",
     [{"name": "task_id", "in": "path", "required": True, "schema": {"type": "integer"}}],
     None, 200, ANY_OBJECT),
    ("get", "/schedules", "Plugins' schedules", "viewer", _PAGING, None, 200, _page(ANY_OBJECT)),
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
]


def document() -> Obj:
    paths: Obj = {}
    errors = {str(code): {"description": text, "content": {"application/json": {
        "schema": _ref("Error")}}} for code, text in (
        (400, "bad request"), (401, "not signed in"), (403, "not allowed (role or CSRF)"),
        (404, "not found"), (409, "conflict with the current state"), (413, "too large"),
        (422, "invalid input, or the plugin refused or failed"), (429, "slow down"))}
    for method, path, summary, role, params, body, status, answer in OPERATIONS:
        op: Obj = {"summary": summary, "parameters": params,
                   "description": f"Needs role: {role}.",
                   "operationId": f"{method}_{path.strip('/').replace('/', '_')}"
                   .replace("{", "").replace("}", ""),
                   "responses": {str(status): {"description": "ok"}, **errors}}
        if answer is not None:
            op["responses"][str(status)]["content"] = {"application/json": {"schema": answer}}
        elif path == "/stream":
            op["responses"]["200"]["content"] = {"text/event-stream": {
                "schema": {"type": "string"}}}
        if body is not None:
            op["requestBody"] = body
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
