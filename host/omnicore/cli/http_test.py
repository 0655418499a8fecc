"""``omnicore test --http 'GET /path?q=1'``: one HTTP request to a project's route handler,
built and called embedded as a route would call it (specs/http-routes.md §2-3): the request
envelope in, the response block out, printed like ``curl -i``."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import click

__all__ = ["request_head", "send"]


def request_head(line: str, headers: tuple[str, ...], handler: str | None,
                 meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(handler, the envelope's head) of ``line`` (``METHOD /path?query``) for a project
    whose manifest is ``meta``."""
    from omnicore.routes.patterns import parse, split_path
    from omnicore.routes.table import clean_path

    method, _, target = line.strip().partition(" ")
    target = target.strip()
    if not method or not target.startswith("/"):
        raise click.BadParameter("give 'METHOD /PATH?QUERY', e.g. 'GET /hello/Ada?x=1'",
                                 param_hint="--http")
    method = method.upper()
    parts = urlsplit(target)
    path = clean_path(unquote(parts.path))
    if path is None:
        raise click.BadParameter(f"{parts.path} is not a path a route may see",
                                 param_hint="--http")
    hdrs: dict[str, str] = {}
    for h in headers:
        name, sep, value = h.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(f"{h!r}: give 'NAME: VALUE'", param_hint="-H")
        key = name.strip().lower()
        hdrs[key] = f"{hdrs[key]}, {value.strip()}" if key in hdrs else value.strip()
    hdrs.setdefault("host", "localhost")
    route, params = "test", {}
    for proposal in meta.get("routes") or []:
        methods = [m.upper() for m in proposal.get("methods") or ["GET"]]
        found = parse(proposal["path"]).match(split_path(path))
        if found is not None and (method in methods or (method == "HEAD" and "GET" in methods)):
            if handler is None or handler == proposal.get("handler"):
                route, params = str(proposal.get("name") or "test"), found
                handler = handler or proposal.get("handler")
                break
    if handler is None:
        handlers = meta.get("handlers") or []
        if len(handlers) != 1:
            raise click.UsageError(f"no route the project proposes serves {method} {path}; "
                                   f"name the handler with --handler")
        handler = str(handlers[0])
    query = parts.query
    qp: dict[str, list[str]] = {}
    for k, v in parse_qsl(query, keep_blank_values=True):
        qp.setdefault(k, []).append(v)
    head = {"method": method, "path": path, "query": query, "query_params": qp,
            "params": params, "headers": hdrs, "route": route,
            "url": f"http://{hdrs['host']}/http{parts.path}" + (f"?{query}" if query else ""),
            "remote": "127.0.0.1", "auth": {"mode": "public"}}
    return handler, head


def send(project: Path, line: str, headers: tuple[str, ...], data: str | None,
         handler: str | None, grant_opts: tuple[str, ...]) -> None:
    from omnicore.cli.plugins import _host, _print_plugin_log, _quiet, parse_grants
    from omnicore.routes.envelope import _BadResponse, decode_response, encode_request
    from omnicore.toolchains import build
    from omnicore.toolchains.manifest import read_plugin_meta

    name, head = request_head(line, headers, handler, read_plugin_meta(project))
    body = (data or "").encode()
    if body and "content-length" not in head["headers"]:
        head["headers"]["content-length"] = str(len(body))
    grants = parse_grants(grant_opts)
    with tempfile.TemporaryDirectory(prefix="omnicore-test-http-") as tmp:
        wasm = build(project, Path(tmp))
        with _quiet(), _host(None) as host:
            info = host.load(wasm, grants=grants)
            if info.state != "loaded":
                raise click.ClickException(f"the plugin did not load ({info.state}): "
                                           f"{info.last_error}")
            try:
                out = host.call(info.name, name, encode_request(head, body))
            finally:
                _print_plugin_log(host.logs(info.name).lines(), False)
    try:
        response = decode_response(out, mode="envelope")
    except _BadResponse as exc:
        raise click.ClickException(f"handler '{name}' answered a malformed response: {exc}") \
            from None
    click.echo(f"HTTP {response.status}")
    for k, v in response.headers:
        click.echo(f"{k.decode('latin-1')}: {v.decode('latin-1')}")
    click.echo("")
    click.echo(response.body.decode("utf-8", "replace"))
