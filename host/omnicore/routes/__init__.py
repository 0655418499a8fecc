"""Plugins that serve HTTP on routes the operator grants (specs/http-routes.md): the route
table (``serve.routes`` and sidecars' ``routes``), the request envelope and response block,
signed webhooks, and :class:`RoutesServer`, the ASGI app the console mounts at
``serve.prefix``; ``wasi:http/proxy`` components are served by proxy.py (their instances and a
request's life with one) on the host's own ``wasi:http`` (wasihttp.py), their request bodies
received as the guest reads them (bodyfeed.py); answer.py holds what
both kinds of route answer with besides the handler's answer."""

from __future__ import annotations

from omnicore.routes.envelope import decode_response, encode_request
from omnicore.routes.server import RoutesServer
from omnicore.routes.signatures import sign_github, sign_stripe

__all__ = ["RoutesServer", "decode_response", "encode_request", "sign_github", "sign_stripe"]
