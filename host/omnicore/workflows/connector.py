"""A connector step's request: recorded with its secret references marked, sent through
``app.egress`` (the same client, address policy and redaction as a plugin's ``omnicore:http``).

Only a ``secrets.NAME`` written in the definition's ``headers`` resolves to a secret. The
headers are evaluated with each reference standing for a token that holds a fresh random
nonce, which no input, webhook body, event payload or step output can contain, since none of
them ever sees it; the recorded input shows ``[secret NAME]`` in its place and lists where
(``secret_refs``: ``{header: [[offset, NAME], ...]}``). At send time only those places become
secret references for the egress client, which reads the values; any other ``[secret NAME]``
text — one that arrived as data — is sent as the text it is.

None of the values is ever written to the run's state, history or logs; the answer is redacted
by the client (every spelling of every credential it sent) and again after its JSON is decoded.
Redirects are not followed (a redirect off the base URL would carry the credentials
elsewhere); the answer is bounded in bytes (counted as it streams) and the whole exchange in
time. Every request carries the step's ``Idempotency-Key`` so an upstream can drop the repeat
of an at-least-once delivery.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from omnicore.egress import Egress, Refused, Request, SecretMissing, SecretRef
from omnicore.egress.db import Databases
from omnicore.egress.request import HeaderValue
from omnicore.workflows.definition import Step

__all__ = ["ConnectorFailed", "call_connector", "record_request", "secret_placeholder"]

_RETRYABLE = frozenset({408, 425, 429, 500, 502, 503, 504})
_KEPT_HEADERS = ("content-type", "etag", "location", "last-modified")


def secret_placeholder(name: str) -> str:
    """What a ``secrets.NAME`` reference shows as in what a run records (and in every log)."""
    return f"[secret {name}]"


# Internal, outside omnicore.errors' tree on purpose: the step executor catches it and records
# its message on the run's step (retried when ``retryable``); it never leaves the package.
class ConnectorFailed(Exception):
    """The request failed; ``retryable`` when trying again may help (5xx, 429, I/O)."""

    def __init__(self, message: str, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


def record_request(step: Step, data: Mapping[str, Any]) -> dict[str, Any]:
    """The request ``step`` will send, evaluated over ``data``, as its recorded input."""
    nonce = secrets.token_hex(16)
    # A token names its secret by index, not by name: a CEL function that rewrites it
    # (lowerAscii) breaks the token instead of turning it into another secret's name.
    tokens = {f"<{nonce}:{i}>": n for i, n in enumerate(sorted(step.headers.secrets))}
    token = re.compile("|".join(map(re.escape, tokens)) or "(?!)")
    masked = dict(data, secrets={n: t for t, n in tokens.items()})
    evaluated = step.headers.evaluate(masked)
    headers: dict[str, str] = {}
    refs: dict[str, list[list[Any]]] = {}
    for key, value in (evaluated or {}).items():
        text = value if isinstance(value, str) else str(value)
        shown, places, last = [], [], 0
        for m in token.finditer(text):
            shown.append(text[last:m.start()])
            places.append([sum(map(len, shown)), tokens[m[0]]])
            shown.append(secret_placeholder(tokens[m[0]]))
            last = m.end()
        shown.append(text[last:])
        headers[str(key)] = "".join(shown)
        if places:
            refs[str(key)] = places
    request = {"method": step.method, "path": step.path.evaluate(data),
               "query": step.query.evaluate(data),
               "headers": None if evaluated is None else headers,
               "body": step.with_.evaluate(data)}
    if refs:
        request["secret_refs"] = refs
    return request


def _headers(recorded: Mapping[str, Any]) -> dict[str, HeaderValue]:
    """The recorded headers, with exactly the listed places as secret references."""
    refs = recorded.get("secret_refs") or {}
    out: dict[str, HeaderValue] = {}
    for key, value in (recorded.get("headers") or {}).items():
        text = str(value)
        places = refs.get(key) or []
        if not places:
            out[str(key)] = text
            continue
        parts: list[str | SecretRef] = []
        last = 0
        for offset, name in places:
            mark = secret_placeholder(str(name))
            if not isinstance(offset, int) or offset < last or \
                    text[offset:offset + len(mark)] != mark:
                raise ConnectorFailed(f"the recorded header {key!r} does not match its "
                                      "secret references; restart the run", retryable=False)
            parts += [text[last:offset], SecretRef(str(name))]
            last = offset + len(mark)
        parts.append(text[last:])
        out[str(key)] = tuple(parts)
    return out


def _request(name: str, recorded: Mapping[str, Any], idempotency_key: str) -> Request:
    headers = _headers(recorded)
    headers["Idempotency-Key"] = idempotency_key
    path = str(recorded.get("path") or "/")
    params = {str(k): str(v) for k, v in (recorded.get("query") or {}).items()}
    if params:
        path += ("&" if "?" in path else "?") + urlencode(params)
    body = b""
    if recorded.get("body") is not None:
        body = json.dumps(recorded["body"]).encode()
        if not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
    return Request(str(recorded.get("method") or "GET"), connector=name, path=path,
                   headers=headers, body=body)


def call_connector(egress: Egress, name: str, recorded: Mapping[str, Any], *,
                   idempotency_key: str, timeout_s: float, max_bytes: int) -> dict[str, Any]:
    """Send one recorded request; ``{"status", "headers", "body"}`` (body JSON when it is)."""
    try:
        client = egress.connector_client(name, max_response_bytes=max_bytes)
    except KeyError:
        raise ConnectorFailed(f"the app has no connector {name!r}", retryable=False) from None
    req = _request(name, recorded, idempotency_key)
    try:
        resp = client.send(req, time.monotonic() + timeout_s)
    except SecretMissing as exc:
        raise ConnectorFailed(f"secret {exc.name!r} is not set (omnicore secrets set "
                              f"{exc.name})", retryable=False) from None
    except Refused as exc:
        if exc.status == "TOO_LARGE":
            raise ConnectorFailed(f"connector {name!r}: the answer is over {max_bytes} bytes "
                                  "(workflows.max_output_bytes)", retryable=False) from None
        raise ConnectorFailed(f"connector {name!r}: {exc.status}: {exc}"[:500],
                              retryable=exc.retryable) from None
    text = resp.body.decode("utf-8", "replace")
    try:
        parsed: Any = json.loads(text) if text else None
    except (ValueError, RecursionError):
        parsed = text
    # Redacted as bytes by the client; again now that JSON escapes are decoded.
    parsed = resp.redactor.cut_value(parsed)
    if resp.status >= 400:
        raise ConnectorFailed(f"connector {name!r}: {req.method} {recorded.get('path')} answered "
                              f"{resp.status}: {resp.redactor.cut_text(text)[:300]}",
                              retryable=resp.status in _RETRYABLE)
    kept = {k: v for k, v in resp.headers.items() if k in _KEPT_HEADERS}
    return {"status": resp.status, "headers": kept, "body": parsed}


#: The pool owner of workflow steps' statements (no plugin name has parentheses).
WORKFLOWS_OWNER = "(workflows)"


def run_statement(databases: Databases, name: str, query: bool, request: Any,
                  deadline: float) -> Any:
    """A ``connector:NAME/query`` or ``/execute`` step: the statement of ``with`` (``{sql,
    params}``, params from the step's inputs) on database connector ``name``, bound by the
    step's deadline; the §4.10 result as the step's output (``{columns, rows}`` or
    ``{rows_affected, last_insert_id?}``). ConnectorFailed otherwise, retryable when the
    database was unavailable."""
    try:
        if not isinstance(request, Mapping):
            raise Refused("INVALID", "with must be {sql: ..., params: [...]}")
        unknown = sorted(set(request) - {"sql", "params"})
        if unknown:
            raise Refused("INVALID", f"with has an unknown key {unknown[0]!r} (sql, params)")
        backend = databases.backend(name, ("postgres", "mysql"))
        sql, args = backend.request(request)
        # The workflows' statements share a session owner of their own, never a plugin's.
        out = backend.run(WORKFLOWS_OWNER, query, sql, args, deadline)
    except Refused as exc:
        raise ConnectorFailed(f"connector {name}: {exc.status}: {exc}",
                              retryable=exc.status in ("UNAVAILABLE", "QUOTA")) from None
    return json.loads(out)
